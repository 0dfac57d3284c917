"""The co-search job: check the options, load the perplexity and cost sources, run NSGA-II
per hardware choice, and hand the evaluations to the report.

Owns the wiring between the options (`options.py`), the run directory (`rundir.py`), the
problem (`problem.py`), the algorithm (`nsga2.py`) and the result files (`report.py`),
and the checks that need the loaded sources (cost tables, anchors, constraints that no
model can meet) before the first generation. It must not contain search logic of its
own. `cosearch.search` (the CLI) calls `run`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cosearch.config import RunConfig
from cosearch.evo.nsga2 import Settings, evolve
from cosearch.evo.options import SearchOptions, resolve_hw
from cosearch.evo.options import check as check_options
from cosearch.evo.problem import Evaluation, InfeasibleError, Problem, SearchError
from cosearch.evo.report import finish
from cosearch.evo.rundir import RunDir, describe
from cosearch.evo.rundir import check as check_rundir
from cosearch.space import Arch

log = logging.getLogger(__name__)

TRAIN_HINT = (
    "train one with `python -m cosearch.train_supernet --preset PRESET "
    "--workdir DIR` and pass --checkpoint DIR"
)


# ----- sources ----------------------------------------------------------------------------
def make_coster(config: RunConfig, opts: SearchOptions) -> Any:
    from cosearch.hw.lut import Coster
    from cosearch.hw.workload import model_output_layer

    return Coster(
        config.space,
        regime=opts.regime,
        lut_dir=opts.lut_dir,
        backend=opts.backend,
        strict=opts.strict,
        output=model_output_layer(config.space, config.model),
        scenario=opts.scenario,
    )


# ----- the job ----------------------------------------------------------------------------
def cost_source(coster: Any, hw: Any) -> str:
    """Where the costs of `hw` come from: the LUT file, or the analytical model."""
    table_for = getattr(coster, "table_for", None)
    if table_for is None:
        return type(coster).__name__
    from cosearch.hw.lut import portable_path

    table = table_for(hw)
    return portable_path(table.path) if table is not None else "analytical model (no LUT)"


def _anchors(problem: Problem, hws: Sequence[Any]) -> list[Evaluation]:
    """Largest and smallest arch on every hardware config: baselines and reference point."""
    sp = problem.space
    problem.generation = -1
    return problem.evaluate_pairs([(a, h) for h in hws for a in (sp.largest(), sp.smallest())])


def _reference_point(problem: Problem, anchors: Sequence[Evaluation]) -> tuple[float, ...]:
    """1.1 x the worst anchor value per objective: fixed for the run, so hypervolumes of
    different generations (and of a resumed run) compare."""
    vals = [
        [a.objective(o) for a in anchors if math.isfinite(a.objective(o))]
        for o in problem.objectives
    ]
    if any(not v for v in vals):
        raise SearchError(
            "the anchor architectures have no finite objective values; check "
            "the checkpoint and the cost tables"
        )
    return tuple(1.1 * max(v) for v in vals)


def run(
    config: RunConfig,
    workdir: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    options: SearchOptions | None = None,
    resume: bool = False,
    evaluator: Any = None,
    coster: Any = None,
    baseline_evaluator: Any = None,
    progress: bool = True,
    on_generation: Callable[[str, int, dict], None] | None = None,
    ppl_cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Run the co-search of `config` (its `search` section: population, generations,
    mutation/crossover probabilities, seed, eval tokens) into `workdir`.

    `options` default to `SearchOptions()`. `evaluator` (with `perplexity(arch, split,
    max_tokens)`) and `coster` (with `cost_many(archs, hw)`) are loaded from `checkpoint`
    and the LUTs unless injected. Returns a small summary dict; the files in `workdir` hold
    everything. `ppl_cache_dir`: where the evaluators keep their perplexity cache
    (default: `workdir`).
    """
    sc = config.search
    options = options or SearchOptions()
    check_options(config, options)
    settings = Settings(
        population=sc.population,
        generations=sc.generations,
        mutation_prob=sc.mutation_prob,
        crossover_prob=sc.crossover_prob,
        crossover=options.crossover,
        seed=sc.seed,
    )
    hws, hw_space = resolve_hw(options)
    desc = describe(config, options, checkpoint, data_dir)
    check_rundir(Path(workdir), desc, resume)  # before loading anything: fail fast

    if evaluator is None:
        cache = ppl_cache_dir or workdir
        evaluator = _load_evaluator(config, checkpoint, data_dir, cache_dir=cache)
    if baseline_evaluator is None and options.baseline_checkpoint and options.baseline_ppl is None:
        # loaded now, not after the search, so that a bad directory fails first
        baseline_evaluator = _load_evaluator(
            config,
            options.baseline_checkpoint,
            data_dir,
            "--baseline-checkpoint",
            ppl_cache_dir or workdir,
        )
    ev_space = getattr(evaluator, "space", None)
    if ev_space is not None and ev_space.name != config.space.name:
        raise SearchError(
            f"checkpoint was trained on search space '{ev_space.name}' but the "
            f"preset uses '{config.space.name}'; pass --preset {ev_space.name} "
            "or a checkpoint of this preset"
        )
    if getattr(evaluator, "from_scratch", None) is not None:
        raise SearchError(
            f"checkpoint '{checkpoint}' is a from-scratch model, not a supernet; "
            "pass it as --baseline-checkpoint instead"
        )
    if coster is None:
        coster = make_coster(config, options)
    if options.ppl == "int8":  # every perplexity of the run is the int8 model's
        from cosearch.supernet.quant import Int8View

        evaluator = Int8View(evaluator)
        if baseline_evaluator is not None:
            baseline_evaluator = Int8View(baseline_evaluator)

    eval_tokens = sc.eval_tokens or None

    def ppl_fn(arch: Arch) -> float:
        return float(evaluator.perplexity(arch, "valid", eval_tokens))

    t_start = time.perf_counter()  # the time split covers the search, not loading
    max_latency_s = None if options.max_latency_ms is None else options.max_latency_ms / 1e3
    labels = [h.name for h in hws] if hw_space is None else ["hw-search"]
    problems: dict[str, Problem] = {}
    refs: dict[str, tuple[float, ...]] = {}
    ppl_cache: dict[Arch, float] = {}
    sources: dict[str, str] = {}
    histories: dict[str, list[dict]] = {}
    for k, label in enumerate(labels):
        problem = Problem(
            config.space,
            ppl_fn,
            coster,
            hw=hws[k] if hw_space is None else None,
            hw_space=hw_space,
            objectives=options.objectives,
            max_ppl=options.max_ppl,
            max_latency_s=max_latency_s,
            ppl_cache=ppl_cache,
        )
        anchor_hws = [hws[k]] if hw_space is None else hw_space.configs()
        anchors = _anchors(problem, anchor_hws)  # reads the LUTs: their errors say what to do
        _check_constraints(problem, anchors, options, label)
        refs[label] = _reference_point(problem, anchors)
        sources.update({h.name: cost_source(coster, h) for h in anchor_hws})
        problems[label] = problem
    no_lut = [h for h, src in sources.items() if src.startswith("analytical")]
    if no_lut and options.backend == "auto":
        log.warning(
            "no %s LUT of preset '%s' for %s: costing with the analytical model; "
            "build one with `python -m cosearch.build_lut --preset %s --hw %s` or "
            "pass --lut-dir",
            options.regime,
            config.space.name,
            ",".join(no_lut),
            config.space.name,
            no_lut[0],
        )

    # Only a search that can start gets a run directory (a rerun needs no --resume).
    run_dir = RunDir(workdir, desc, resume)
    for label, problem in problems.items():

        def on_gen(gen: int, row: dict, label: str = label) -> None:
            run_dir.log_generation(label, row, time.perf_counter() - t_start)
            if on_generation is not None:
                on_generation(label, gen, row)

        log.info(
            "searching %s: population %d, %d generations, objectives %s",
            label,
            settings.population,
            settings.generations,
            ",".join(options.objectives),
        )
        result = evolve(
            problem,
            settings,
            refs[label],
            checkpoint=run_dir.state(label),
            resume=resume,
            on_generation=on_gen,
            progress=progress,
            desc=f"NSGA-II {label}",
        )
        histories[label] = result.history

    # per config: how many GEMM shapes its table (Timeloop or analytical) gave, how many
    # the model costed
    if hasattr(coster, "coverage"):
        sources.update({f"{h} shapes": v for h, v in coster.coverage().items()})
    fallbacks = getattr(coster, "fallbacks", 0)
    if fallbacks:
        sources["analytical fallbacks"] = (
            f"{fallbacks} GEMM shape(s) missing from the LUTs were costed with the analytical "
            "model (--strict refuses them)"
        )
    return finish(
        config,
        run_dir.path,
        options,
        problems,
        histories,
        evaluator,
        baseline_evaluator,
        checkpoint,
        time.perf_counter() - t_start + run_dir.prior_s,
        sources,
        progress,
    )


def _load_evaluator(
    config: RunConfig,
    checkpoint: str | None,
    data_dir: str | None,
    flag: str = "--checkpoint",
    cache_dir: str | Path | None = None,
) -> Any:
    """The checkpoint's evaluator; its perplexity cache lives in the search's run directory
    (`cache_dir`), never in the (possibly committed) checkpoint."""
    if not checkpoint:
        raise SearchError(f"no supernet checkpoint given; {TRAIN_HINT}")
    from cosearch.supernet.checkpoint import CheckpointError
    from cosearch.supernet.evaluate import load_evaluator

    try:
        return load_evaluator(
            checkpoint, data_dir, expect_space=config.space.name, cache_dir=cache_dir
        )
    except CheckpointError as e:  # name the flag and how to make a checkpoint
        raise SearchError(
            f"{flag}: {e}" + ("" if "train_supernet" in str(e) else f"; {TRAIN_HINT}")
        ) from None


def _check_constraints(
    problem: Problem, anchors: Sequence[Evaluation], options: SearchOptions, label: str
) -> None:
    """Constraints judged on the anchors, before the first generation: a latency limit the
    smallest (fastest) arch misses is refused; a perplexity limit both anchors miss is
    warned about (a mid-sized subnet may still meet it)."""
    smallest = problem.space.smallest()
    if options.max_latency_ms is not None:
        fastest = min((a for a in anchors if a.arch == smallest), key=lambda a: a.latency_s)
        if fastest.latency_ms > options.max_latency_ms:
            raise InfeasibleError(
                f"--max-latency-ms {options.max_latency_ms} is infeasible on {label}: even "
                f"the smallest arch {fastest.arch.short()} takes "
                f"{fastest.latency_ms:.4g} ms on {fastest.hw}; raise the limit"
            )
    if options.max_ppl is not None:
        ppls = {a.arch.short(): problem.perplexity(a.arch) for a in anchors}
        if all(p > options.max_ppl for p in ppls.values()):
            log.warning(
                "--max-ppl %g: both the largest and the smallest arch miss it (%s); the "
                "search may find no arch that meets it",
                options.max_ppl,
                ", ".join(f"{k}: {v:.4g}" for k, v in ppls.items()),
            )


__all__ = ["SearchOptions", "run", "resolve_hw", "make_coster"]
