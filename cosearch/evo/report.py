"""The end of a co-search: the front's re-evaluation, the baselines, the result files.

Owns what a finished search writes into its run directory (pareto.json, pareto.csv,
evaluated.csv, hypervolume.csv, the plots, summary.md; status.json while it works) from the
problems' evaluations,
with the front computations and report pieces of `pareto`. It must not search.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cosearch.config import RunConfig
from cosearch.evo import budgets, pareto
from cosearch.evo.options import SearchOptions
from cosearch.evo.problem import Evaluation, InfeasibleError, Problem
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic
from cosearch.scenario import get_scenario
from cosearch.stats import paired_delta

log = logging.getLogger(__name__)


class _Status:
    """`status.json` in the run directory: which step of the finish a search is on and how
    far (the front's re-evaluation; the budget decisions: baseline and budget, screens and
    final scores so far), rewritten at each new step and at most every `every_s` between,
    so that a run without a progress bar (--quiet, a batch log) can be followed. A sign of
    life, not a result (the finished run says `"step": "done"`)."""

    def __init__(self, path: Path, every_s: float = 10.0) -> None:
        self.path, self.every_s = path, every_s
        self.fields: dict[str, Any] = {}
        self._t0 = time.monotonic()
        self._last = -math.inf

    def update(self, new_step: bool = False, **fields: Any) -> None:
        self.fields.update(fields)
        now = time.monotonic()
        if new_step or now - self._last >= self.every_s:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body = {**self.fields, "finish_elapsed_s": round(now - self._t0, 1)}
            write_json_atomic(self.path, {**body, "updated_utc": stamp})
            self._last = now


def finish(
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
    """Re-evaluate the front (and each fixed config's own) on the valid and test splits,
    cost the baselines, write the result files; returns the run's summary."""
    space = config.space
    scenario = get_scenario(options.scenario)
    unit = scenario.unit(space.seq_len)
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
    status = _Status(workdir / "status.json")
    if options.final_eval:
        log.info(
            "re-evaluating %d front members (%d archs) on the valid and test splits (%s tokens)",
            len(to_eval),
            len({e.arch for e in to_eval}),
            final_tokens or "all",
        )
        status.update(True, step="final re-evaluation of the front", done=0, of=len(to_eval))
        for i, e in enumerate(
            tqdm(to_eval, desc="final re-evaluation", disable=not progress, leave=False)
        ):
            e.extra["ppl_valid"] = float(evaluator.perplexity(e.arch, "valid", final_tokens))
            e.extra["ppl_test"] = float(evaluator.perplexity(e.arch, "test", final_tokens))
            status.update(done=i + 1)
    f32 = getattr(evaluator, "float_evaluator", None)
    if f32 is not None:  # an int8 search: each member's int8 - float32, paired over windows
        tokens = final_tokens if options.final_eval else (config.search.eval_tokens or None)
        for e in to_eval:
            w = f32.windows(e.arch, "valid", tokens)
            d, se = paired_delta(evaluator.windows(e.arch, "valid", tokens), w)
            e.extra.update(ppl_f32=w.ppl, delta_ppl_int8=d, delta_ppl_int8_se=se)
    final_s = time.perf_counter() - t_final

    # Where perplexities come from: the supernet (measured) or e.g. a predictor, whose
    # label then travels into every file's title, axes and JSON
    ppl_source = getattr(evaluator, "ppl_source", "supernet")
    largest_name = "supernet" if ppl_source == "supernet" else f"{ppl_source} (not measured)"
    # Baselines: the largest arch on each hardware of the front (supernet weights), and
    # the from-scratch model of the same arch when given.
    largest = space.largest()
    scratch_ppl = options.baseline_ppl
    if scratch_ppl is None and baseline_evaluator is not None:
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
            pareto.Baseline(f"{largest_name} largest", hw, ppl, b.edp, b.latency_s, b.energy_J)
        )
        if scratch_ppl is not None:
            baselines.append(
                pareto.Baseline("from scratch", hw, scratch_ppl, b.edp, b.latency_s, b.energy_J)
            )

    # Files.
    pareto.write_csv(workdir / "evaluated.csv", evaluated, ppl_source)
    pareto.write_csv(workdir / "pareto.csv", front, ppl_source)
    reductions: list[dict] = []
    t_budget = time.perf_counter()
    budget_tokens = (
        final_tokens if options.budget_tokens is None else (options.budget_tokens or None)
    )
    if options.final_eval and hasattr(evaluator, "windows"):
        log.info(
            "deciding perplexity budgets on the validation split (paired, %s tokens)",
            budget_tokens or "all",
        )
        status.update(True, step="budget decisions", done=None, of=None)
        with tqdm(desc="budget re-evaluations", unit="arch", disable=not progress) as bar:
            screened: dict[int, int] = {}
            where = [""]
            scored = [0]

            def show(new_step: bool = False) -> None:
                done = ", ".join(f"{n} at {t:,}" for t, n in sorted(screened.items()))
                bar.set_postfix_str(f"{where[0]}; screened {done or 'none'}", refresh=True)
                status.update(
                    new_step,
                    on=where[0],
                    screens_by_tokens={str(t): n for t, n in sorted(screened.items())},
                    final_scores=scored[0],
                )

            def on_screen(tokens: int) -> None:
                screened[tokens] = screened.get(tokens, 0) + 1
                show()

            def on_budget(text: str) -> None:
                where[0] = text
                show(new_step=True)

            def on_eval() -> None:
                scored[0] += 1
                bar.update()
                show()

            reductions = budgets.paired_budgets(
                evaluated,
                baselines,
                evaluator,
                baseline_evaluator,
                largest,
                config.search.eval_tokens or None,
                budget_tokens,
                any_hw="hw-search" in problems,
                screen_tokens=options.budget_screen_tokens,
                max_evals=options.budget_max_evals,
                on_eval=on_eval,
                on_screen=on_screen,
                on_budget=on_budget,
            )
    paired = {(r["baseline"], r["hw"]) for r in reductions}
    reductions += [  # baselines without windows to pair (e.g. a bare --baseline-ppl)
        {**r, "method": "search/front point estimates (not paired)"}
        for b in baselines
        if (b.name, b.hw) not in paired
        for r in pareto.edp_reductions(hw_fronts.get(b.hw, front), b)
    ]
    final_s += time.perf_counter() - t_budget
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
    write_json_atomic(
        workdir / "pareto.json",
        {
            "objectives": list(objectives),
            "ppl_source": ppl_source,
            "regime": options.regime,
            "scenario": scenario.to_dict(space.seq_len),
            "objective_unit": f"latency, energy and EDP {unit}",
            "ppl_precision": options.ppl,
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
            title=f"{config.name}: perplexity vs {metric} ({options.hw}, {options.regime})"
            + ("" if scenario.is_default else f"\n{metric} {unit}")
            + ("" if ppl_source == "supernet" else f"\nperplexity: {ppl_source}, not measured"),
            ppl_source=ppl_source,
        )
    pareto.plot_hypervolume(workdir / "hypervolume.png", histories)
    header = {
        "preset": config.name,
        "hardware": options.hw,
        "objectives": ", ".join(objectives),
        "scenario": f"{scenario.tag(space.seq_len)}: latency, energy and EDP {unit}",
        "checkpoint": checkpoint,
        "seed": config.search.seed,
        "population x generations": f"{config.search.population} x {config.search.generations}",
        "search eval tokens": config.search.eval_tokens or "all",
        "perplexity": (
            "float32"
            if f32 is None
            else "post-training int8 (cosearch/supernet/quant.py); the front's int8 - "
            f"float32 on valid, {tokens or 'all'} tokens, paired"
        ),
        "final re-evaluation": (
            f"valid and test, {options.final_tokens or 'all'} tokens each"
            if options.final_eval
            else "off"
        ),
        "budgets decided on": (
            f"valid, {budget_tokens or 'all'} tokens, paired with the baseline"
            if options.final_eval
            else "search estimates (no final re-evaluation)"
        ),
        "constraints": f"max ppl {options.max_ppl}, max latency {options.max_latency_ms} ms",
        "time": f"{time_split['total_s']:.1f} s (perplexity {ppl_s:.1f} s, hardware "
        f"costing {hw_s:.2f} s, DEAP+bookkeeping "
        f"{time_split['deap_and_bookkeeping_s']:.1f} s, final re-evaluation "
        f"{final_s:.1f} s)",
        "cost source": "; ".join(f"{k}: {v}" for k, v in sources.items()),
        "commit": git_commit(),
    }
    write_text_atomic(
        workdir / "summary.md",
        pareto.summary_markdown(
            header=header,
            front=front,
            baselines=baselines,
            histories=histories,
            n_evaluated=len(evaluated),
            regime=options.regime,
            reductions=reductions,
            ppl_source=ppl_source,
        ),
    )
    status.update(True, step="done", on=None, done=None, of=None)
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
