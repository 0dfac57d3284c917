"""The co-search job: resolve hardware, perplexity and cost sources, run NSGA-II per
hardware choice, merge the fronts, re-evaluate them and write the run directory.

Owns the wiring between the problem (`problem.py`), the algorithm (`nsga2.py`) and the
reports (`pareto.py`), and the run directory layout (config.json, state/, metrics.jsonl,
pareto.*, evaluated.csv, hypervolume.csv, plots, summary.md). It must not contain search
logic of its own. `cosearch.search` (the CLI) calls `run`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cosearch.config import RunConfig
from cosearch.evo import pareto
from cosearch.evo.nsga2 import Settings, evolve
from cosearch.evo.problem import (
    OBJECTIVES,
    Evaluation,
    InfeasibleError,
    Problem,
    SearchError,
)
from cosearch.runinfo import git_commit, write_json_atomic
from cosearch.space import Arch

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
STATE_DIR = "state"
METRICS_FILE = "metrics.jsonl"
TIME_FILE = "time.json"
HW_SEARCH = "search"
TRAIN_HINT = (
    "train one with `python -m cosearch.train_supernet --preset PRESET "
    "--workdir DIR` and pass --checkpoint DIR"
)


@dataclass(frozen=True)
class SearchOptions:
    """What the search runs on and for; the NSGA-II numbers live in `config.search`."""

    hw: str = "gemmini-64k-256k"  # a name, NAME1,NAME2 (fronts merged) or "search"
    objectives: tuple[str, ...] = ("ppl", "edp")
    max_ppl: float | None = None
    max_latency_ms: float | None = None
    crossover: str = "uniform"
    regime: str = "optimal"  # LUT mapping regime: optimal | gemmini-tiler
    lut_dir: str | None = None
    backend: str = "auto"
    strict: bool = False
    hw_budget_kib: int | None = None  # --hw search: SRAM budget (default: the space's)
    hw_pe: tuple[int, ...] = ()  # --hw search: PE array sizes (default: the space's)
    hw_budget_mm2: float | None = None  # --hw search: SRAM area budget (CACTI 40 nm)
    baseline_ppl: float | None = None  # from-scratch largest model's validation ppl
    baseline_checkpoint: str | None = None  # ... or its run directory
    final_eval: bool = True  # re-evaluate the front on the valid and test splits
    final_tokens: int = 0  # tokens of each split for that re-evaluation (0 = all)


#: Options that only change the reports, so a resumed run may change them.
REPORT_ONLY = ("baseline_ppl", "baseline_checkpoint", "final_eval", "final_tokens")


# ----- sources ----------------------------------------------------------------------------
def resolve_hw(opts: SearchOptions) -> tuple[list[Any], Any]:
    """(fixed configs, None) for names, or ([], hardware space) for `search`."""
    try:
        from cosearch.hw import gemmini
    except ImportError as e:  # pragma: no cover - the package ships cosearch.hw
        raise SearchError(f"the Gemmini hardware model cannot be imported ({e})") from None
    if opts.hw.strip() == HW_SEARCH:
        space = gemmini.DEFAULT_HW_SPACE
        if opts.hw_budget_kib is not None:
            space = replace(space, budget_kib=int(opts.hw_budget_kib))
        if opts.hw_pe:
            space = replace(space, pe=tuple(opts.hw_pe))
        if opts.hw_budget_mm2 is not None:
            space = replace(space, budget_mm2=float(opts.hw_budget_mm2))
        if not space.configs():
            raise SearchError(
                f"no hardware config fits the budget ({space.budget_kib} KiB "
                f"SRAM, area {opts.hw_budget_mm2} mm^2); raise "
                "--hw-budget-kib / --hw-budget-mm2"
            )
        return [], space
    names = [n.strip() for n in opts.hw.split(",") if n.strip()]
    if not names:
        raise SearchError(
            "--hw is empty; give a name like gemmini-64k-256k, a comma list, or 'search'"
        )
    hws = [gemmini.get_hw(n) for n in names]  # UnknownNameError lists the presets
    if len({h.name for h in hws}) != len(hws):
        raise SearchError(f"--hw lists a config twice: {opts.hw}")
    return hws, None


def make_coster(config: RunConfig, opts: SearchOptions) -> Any:
    from cosearch.hw.lut import Coster

    return Coster(
        config.space,
        regime=opts.regime,
        lut_dir=opts.lut_dir,
        backend=opts.backend,
        strict=opts.strict,
    )


def _lut_hint(err: Exception, hw: str, config: RunConfig) -> SearchError:
    msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if "build_lut" not in msg:
        msg += (
            f"; build the table with `python -m cosearch.build_lut --hw {hw} "
            f"--preset {config.name}` (or pass --lut-dir)"
        )
    return SearchError(msg)


# ----- the job ----------------------------------------------------------------------------
def _check_workdir(workdir: Path, desc: dict, resume: bool) -> None:
    path = workdir / CONFIG_FILE
    if not path.exists():
        return
    if not resume:
        raise SearchError(
            f"'{workdir}' already holds a search; pass --resume to continue it "
            "or choose another --out"
        )
    old = json.loads(path.read_text())
    for key in ("config", "options", "checkpoint"):
        a, b = dict(old.get(key) or {}) if key != "checkpoint" else old.get(key), desc[key]
        if key == "config":  # more generations may be asked of a resumed run
            a = json.loads(json.dumps(a))
            b = json.loads(json.dumps(b))
            a.get("search", {}).pop("generations", None)
            b.get("search", {}).pop("generations", None)
        elif key == "options":  # report-only options may change on resume
            a = {k: v for k, v in a.items() if k not in REPORT_ONLY}
            b = {k: v for k, v in json.loads(json.dumps(b)).items() if k not in REPORT_ONLY}
        if a != b:
            raise SearchError(
                f"cannot resume '{workdir}': its {key} differs from this run's "
                f"(saved {a} vs now {b}); rerun with the same flags or a new --out"
            )


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


def _command() -> str | None:
    """The command line as a user would type it (`python -m module args`), no machine paths."""
    if not sys.argv or not sys.argv[0]:
        return None
    mod = Path(sys.argv[0]).with_suffix("")
    name = (
        ".".join(mod.parts[mod.parts.index("cosearch") :]) if "cosearch" in mod.parts else mod.name
    )
    return " ".join(["python -m " + name, *sys.argv[1:]])


def run(
    config: RunConfig,
    workdir: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    data_dir: str | None = None,
    options: SearchOptions = SearchOptions(),
    resume: bool = False,
    evaluator: Any = None,
    coster: Any = None,
    baseline_evaluator: Any = None,
    progress: bool = True,
    on_generation: Callable[[str, int, dict], None] | None = None,
) -> dict:
    """Run the co-search of `config` (its `search` section: population, generations,
    mutation/crossover probabilities, seed, eval tokens) into `workdir`.

    `evaluator` (with `perplexity(arch, split, max_tokens)`) and `coster` (with
    `cost_many(archs, hw)`) are loaded from `checkpoint` and the LUTs unless injected.
    Returns a small summary dict; the files in `workdir` hold everything.
    """
    workdir = Path(workdir)
    sc = config.search
    bad = [o for o in options.objectives if o not in OBJECTIVES]
    if bad or "ppl" not in options.objectives or len(options.objectives) < 2:
        raise SearchError(
            f"--objectives {','.join(options.objectives)}: need ppl plus at "
            f"least one of {[o for o in OBJECTIVES if o != 'ppl']}"
        )
    settings = Settings(
        population=sc.population,
        generations=sc.generations,
        mutation_prob=sc.mutation_prob,
        crossover_prob=sc.crossover_prob,
        crossover=options.crossover,
        seed=sc.seed,
    )
    hws, hw_space = resolve_hw(options)

    if evaluator is None:
        if not checkpoint:
            raise SearchError(f"no supernet checkpoint given; {TRAIN_HINT}")
        from cosearch.supernet.evaluate import load_evaluator
        from cosearch.supernet.train import CheckpointError

        try:
            evaluator = load_evaluator(checkpoint, data_dir, expect_space=config.space.name)
        except (CheckpointError, FileNotFoundError) as e:
            raise SearchError(
                f"{e}" + ("" if "train_supernet" in str(e) else f"; {TRAIN_HINT}")
            ) from None
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
        try:
            coster = make_coster(config, options)
        except (FileNotFoundError, OSError) as e:
            raise _lut_hint(e, options.hw, config) from None

    desc = {
        "config": config.to_dict(),
        "options": asdict(options),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "data_dir": data_dir,
        "git_commit": git_commit(),
        "seed": sc.seed,
        "command": _command(),
    }
    _check_workdir(workdir, desc, resume)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / STATE_DIR).mkdir(exist_ok=True)
    pareto.write_json(workdir / CONFIG_FILE, desc)

    eval_tokens = sc.eval_tokens or None

    def ppl_fn(arch: Arch) -> float:
        return float(evaluator.perplexity(arch, "valid", eval_tokens))

    t_start = time.perf_counter()  # the time split covers the search, not loading
    max_latency_s = options.max_latency_ms / 1e3 if options.max_latency_ms else None
    labels = [h.name for h in hws] if hw_space is None else ["hw-search"]
    problems: dict[str, Problem] = {}
    ppl_cache: dict[Arch, float] = {}
    sources: dict[str, str] = {}
    histories: dict[str, list[dict]] = {}
    # Search time of earlier sessions of a resumed run, saved with every generation.
    time_path = workdir / STATE_DIR / TIME_FILE
    prior_s = 0.0
    if resume and time_path.is_file():
        prior_s = float(json.loads(time_path.read_text()).get("search_s", 0.0))
    metrics_path = workdir / METRICS_FILE
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
        try:
            anchors = _anchors(problem, anchor_hws)
        except (FileNotFoundError, OSError, KeyError) as e:
            raise _lut_hint(e, label, config) from None
        if max_latency_s is not None:
            fastest = min(
                (a for a in anchors if a.arch == config.space.smallest()), key=lambda a: a.latency_s
            )
            if fastest.latency_s > max_latency_s:
                raise InfeasibleError(
                    f"--max-latency-ms {options.max_latency_ms} is infeasible on {label}: even "
                    f"the smallest arch {fastest.arch.short()} takes "
                    f"{fastest.latency_s * 1e3:.4g} ms on {fastest.hw}; raise the limit"
                )
        ref = _reference_point(problem, anchors)
        sources.update({h.name: cost_source(coster, h) for h in anchor_hws})
        no_lut = [h.name for h in anchor_hws if sources[h.name].startswith("analytical")]
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

        def on_gen(gen: int, row: dict, label: str = label) -> None:
            with open(metrics_path, "a") as f:
                f.write(json.dumps({"run": label, **row}) + "\n")
            write_json_atomic(time_path, {"search_s": prior_s + time.perf_counter() - t_start})
            if on_generation is not None:
                on_generation(label, gen, row)

        log.info(
            "searching %s: population %d, %d generations, objectives %s",
            label,
            settings.population,
            settings.generations,
            ",".join(options.objectives),
        )
        try:
            result = evolve(
                problem,
                settings,
                ref,
                checkpoint=workdir / STATE_DIR / f"{label}.json",
                resume=resume,
                on_generation=on_gen,
                progress=progress,
                desc=f"NSGA-II {label}",
            )
        except (FileNotFoundError, OSError, KeyError) as e:
            raise _lut_hint(e, label, config) from None
        problems[label] = problem
        histories[label] = result.history

    return _finish(
        config,
        workdir,
        options,
        problems,
        histories,
        evaluator,
        baseline_evaluator,
        checkpoint,
        time.perf_counter() - t_start + prior_s,
        sources,
        progress,
    )


def _finish(
    config: RunConfig,
    workdir: Path,
    options: SearchOptions,
    problems: dict[str, Problem],
    histories: dict[str, list[dict]],
    evaluator: Any,
    baseline_evaluator: Any,
    checkpoint: str | None,
    elapsed: float,
    sources: dict[str, str],
    progress: bool = False,
) -> dict:
    space = config.space
    evaluated: list[Evaluation] = [e for p in problems.values() for e in p.evaluations()]
    objectives = options.objectives
    front = pareto.pareto_front(evaluated, objectives)
    if not front:
        feas_ppl = [e.ppl for e in evaluated if math.isfinite(e.ppl)]
        lat = [e.latency_s for e in evaluated if math.isfinite(e.latency_s)]
        raise InfeasibleError(
            f"no evaluated (arch, hw) pair satisfies the constraints (max ppl "
            f"{options.max_ppl}, max latency {options.max_latency_ms} ms): the lowest "
            f"perplexity seen was {min(feas_ppl, default=math.nan):.4g} and the lowest "
            f"latency {min(lat, default=math.nan) * 1e3:.4g} ms over {len(evaluated)} pairs; "
            "relax --max-ppl / --max-latency-ms"
        )
    # With several fixed configs, each also gets its own front: the thesis's per-config
    # table compares archs on one hardware, whose members the merged front may lack.
    hw_fronts: dict[str, list[Evaluation]] = {}
    if "hw-search" not in problems and len(problems) > 1:
        for label in problems:
            hw_fronts[label] = pareto.pareto_front(
                [e for e in evaluated if e.hw == label], objectives
            )
    members = [*front, *(e for f in hw_fronts.values() for e in f)]
    to_eval = list({id(e): e for e in members}.values())
    t_final = time.perf_counter()
    final_tokens = options.final_tokens or None
    if options.final_eval:
        log.info(
            "re-evaluating %d front members (%d archs) on the valid and test splits (%s tokens)",
            len(to_eval),
            len({e.arch for e in to_eval}),
            final_tokens or "all",
        )
        for e in tqdm(to_eval, desc="final re-evaluation", disable=not progress, leave=False):
            e.extra["ppl_valid"] = float(evaluator.perplexity(e.arch, "valid", final_tokens))
            e.extra["ppl_test"] = float(evaluator.perplexity(e.arch, "test", final_tokens))
    final_s = time.perf_counter() - t_final

    # Baselines: the largest arch on each hardware of the front (supernet weights), and
    # the from-scratch model of the same arch when given.
    largest = space.largest()
    scratch_ppl = options.baseline_ppl
    if scratch_ppl is None and (options.baseline_checkpoint or baseline_evaluator is not None):
        if baseline_evaluator is None:
            from cosearch.supernet.evaluate import load_evaluator

            baseline_evaluator = load_evaluator(
                options.baseline_checkpoint, expect_space=space.name
            )
        arch = getattr(baseline_evaluator, "from_scratch", None) or largest
        scratch_ppl = float(baseline_evaluator.perplexity(arch, "valid", final_tokens))
    baselines: list[pareto.Baseline] = []
    any_problem = next(iter(problems.values()))
    for hw in sorted({e.hw for e in front} | set(hw_fronts)):
        problem = next((p for p in problems.values() if hw in p.hw_configs), any_problem)
        (b,) = problem.evaluate_pairs([(largest, problem.hw_config(hw))])
        ppl = (
            float(evaluator.perplexity(largest, "valid", final_tokens))
            if options.final_eval
            else problem.perplexity(largest)
        )  # b.ppl may be NaN
        baselines.append(
            pareto.Baseline("supernet largest", hw, ppl, b.edp, b.latency_s, b.energy_J)
        )
        if scratch_ppl is not None:
            baselines.append(
                pareto.Baseline("from scratch", hw, scratch_ppl, b.edp, b.latency_s, b.energy_J)
            )

    # Files.
    pareto.write_csv(workdir / "evaluated.csv", evaluated)
    pareto.write_csv(workdir / "pareto.csv", front)
    reductions = [
        r for b in baselines for r in pareto.edp_reductions(hw_fronts.get(b.hw, front), b)
    ]
    het = pareto.heterogeneity(front)
    timers = {k: asdict(p.timers) for k, p in problems.items()}
    ppl_s = sum(t["ppl_s"] for t in timers.values())
    hw_s = sum(t["hw_s"] for t in timers.values())
    search_s = elapsed
    time_split = {
        "total_s": search_s + final_s,
        "search_s": search_s,
        "ppl_eval_s": ppl_s,
        "hw_cost_s": hw_s,
        "deap_and_bookkeeping_s": search_s - ppl_s - hw_s,
        "final_eval_s": final_s,
        "ppl_evals": sum(t["ppl_calls"] for t in timers.values()),
        "hw_archs_costed": sum(t["hw_archs"] for t in timers.values()),
    }
    pareto.write_json(
        workdir / "pareto.json",
        {
            "objectives": list(objectives),
            "regime": options.regime,
            "hw": options.hw,
            "preset": config.name,
            "seed": config.search.seed,
            "checkpoint": checkpoint,
            "front": [e.to_dict() for e in front],
            "fronts_by_hw": {h: [e.to_dict() for e in f] for h, f in hw_fronts.items()},
            "baselines": [asdict(b) for b in baselines],
            "edp_reduction": reductions,
            "heterogeneity": het,
            "time": time_split,
            "cost_source": sources,
        },
    )
    hist_rows = [{"run": k, **r} for k, h in histories.items() for r in h]
    pareto.write_history_csv(workdir / "hypervolume.csv", hist_rows)
    for metric in ("edp", "latency", "energy"):
        pareto.plot_front(
            workdir / f"ppl_vs_{metric}.png",
            metric,
            evaluated,
            front,
            baselines,
            title=f"{config.name}: perplexity vs {metric} ({options.hw}, {options.regime})",
        )
    pareto.plot_hypervolume(workdir / "hypervolume.png", histories)
    header = {
        "preset": config.name,
        "hardware": options.hw,
        "objectives": ", ".join(objectives),
        "checkpoint": checkpoint,
        "seed": config.search.seed,
        "population x generations": f"{config.search.population} x {config.search.generations}",
        "search eval tokens": config.search.eval_tokens or "all",
        "final re-evaluation": (
            f"valid and test, {options.final_tokens or 'all'} tokens each"
            if options.final_eval
            else "off"
        ),
        "constraints": f"max ppl {options.max_ppl}, max latency {options.max_latency_ms} ms",
        "time": f"{time_split['total_s']:.1f} s (perplexity {ppl_s:.1f} s, hardware "
        f"costing {hw_s:.2f} s, DEAP+bookkeeping "
        f"{time_split['deap_and_bookkeeping_s']:.1f} s, final re-evaluation "
        f"{final_s:.1f} s)",
        "cost source": "; ".join(f"{k}: {v}" for k, v in sources.items()),
        "commit": git_commit(),
    }
    pareto.write_text(
        workdir / "summary.md",
        pareto.summary_markdown(
            header=header,
            front=front,
            baselines=baselines,
            histories=histories,
            n_evaluated=len(evaluated),
            regime=options.regime,
        ),
    )
    log.info("front of %d pairs written to %s", len(front), workdir)
    return {
        "workdir": str(workdir),
        "front_size": len(front),
        "n_evaluated": len(evaluated),
        "hypervolume": {k: h[-1]["hypervolume"] for k, h in histories.items() if h},
        "time": time_split,
        "edp_reduction": reductions,
        "front": [e.to_dict() for e in front],
    }


__all__ = ["SearchOptions", "run", "resolve_hw", "make_coster"]
