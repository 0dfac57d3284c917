"""Seed table and plots of the thesis_cpu study (see report.md).

    python experiments/thesis_cpu/analyse.py experiments/thesis_cpu/results

Reads every `seed*/pareto.json` under the results directory (written by
`python -m cosearch.search`), and writes `table.md`, `summary.json`, `fronts.png` and
`reduction_vs_budget.png` there: per hardware config, baseline and perplexity budget, the
EDP reduction decided on re-evaluated paired perplexities (the search's `edp_reduction`
rows), combined over the seeds with an interval over token windows and seeds; supernet
vs from-scratch perplexity; layer heterogeneity of the fronts.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosearch.evo.budgets import BUDGETS, combine_seeds  # noqa: E402
from cosearch.evo.pareto import (  # noqa: E402
    Baseline,
    edp_reductions,
    heterogeneity,
    markdown_table,
)
from cosearch.evo.problem import Evaluation  # noqa: E402
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic  # noqa: E402

CURVE_BUDGETS = np.linspace(0.0, 0.10, 41)  # relative perplexity budgets of the curve


def load_runs(results: Path) -> dict[int, dict]:
    runs = {}
    for path in sorted(results.glob("seed*/pareto.json")):
        d = json.loads(path.read_text())
        if not d.get("fronts_by_hw"):
            raise SystemExit(f"{path} has no per-config fronts; rerun it with this version")
        d["fronts_by_hw"] = {
            hw: [Evaluation.from_dict(m) for m in members]
            for hw, members in d["fronts_by_hw"].items()
        }
        d["baselines"] = [Baseline(**b) for b in d["baselines"]]
        runs[int(d["seed"])] = d
    if not runs:
        raise SystemExit(f"no seed*/pareto.json under {results}; run experiments/thesis_cpu/run.sh")
    return runs


def table_rows(runs: dict[int, dict]) -> list[dict]:
    """One entry per (hw, baseline, budget): the seeds' paired picks, decided on the final
    split (`cosearch.evo.budgets`), combined by `combine_seeds`; the from-scratch
    baseline (the thesis's) first."""
    keyed: dict[tuple, dict[int, dict]] = {}
    for seed, d in runs.items():
        for r in d["edp_reduction"]:
            if r.get("method", "").startswith("paired"):
                keyed.setdefault((r["hw"], r["baseline"], r["budget"]), {})[seed] = r
    if not keyed:
        raise SystemExit(
            "no paired budget rows in the seeds' pareto.json: rerun the searches with this "
            "version (and --baseline-checkpoint) so budgets are decided on the final split"
        )
    order = {label: i for i, (label, _, _) in enumerate(BUDGETS)}
    rows = []
    for (hw, base, budget), by_seed in sorted(
        keyed.items(), key=lambda kv: (kv[0][1] != "from scratch", kv[0][0], order[kv[0][2]])
    ):
        first = next(iter(by_seed.values()))
        rows.append(
            {
                "hw": hw,
                "baseline": base,
                "budget": budget,
                "baseline_ppl": first["baseline_ppl"],
                "final_tokens": first["final_tokens"],
                **combine_seeds([by_seed.get(s) for s in sorted(runs)]),
                "seeds": sorted(runs),
            }
        )
    return rows


def curve(runs: dict[int, dict], hw: str, name: str) -> np.ndarray:
    """EDP reduction vs relative budget, one row per seed (NaN: nothing within budget)."""
    out = []
    for d in runs.values():
        b = next(b for b in d["baselines"] if b.hw == hw and b.name == name)
        th = [(f"{x:.3f}", float(x), True) for x in CURVE_BUDGETS]
        rs = edp_reductions(d["fronts_by_hw"][hw], b, th)
        out.append([r["reduction"] if r["reduction"] is not None else np.nan for r in rs])
    return np.array(out, dtype=float)


def plot_fronts(runs: dict[int, dict], path: Path) -> None:
    hws = list(next(iter(runs.values()))["fronts_by_hw"])
    fig, axes = plt.subplots(1, len(hws), figsize=(6 * len(hws), 4.5), sharey=True)
    for ax, hw in zip(np.atleast_1d(axes), hws):
        for seed, d in runs.items():
            f = sorted(d["fronts_by_hw"][hw], key=lambda e: e.edp)
            ax.plot(
                [e.edp for e in f],
                [e.extra.get("ppl_valid", e.ppl) for e in f],
                "o-",
                ms=3,
                lw=0.8,
                label=f"front, seed {seed}",
            )
        d = next(iter(runs.values()))
        for b, marker in (("supernet largest", "X"), ("from scratch", "*")):
            base = next((x for x in d["baselines"] if x.hw == hw and x.name == b), None)
            if base is not None:
                ax.plot(base.edp, base.ppl, marker, ms=12, color="k", label=f"{b} (largest arch)")
        ax.set_xscale("log")
        ax.set_xlabel("EDP per sequence (J·s, modelled)")
        ax.set_title(hw)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("validation perplexity (re-evaluated)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    seeds = f"{len(runs)} search seed" + ("s" if len(runs) != 1 else "")
    fig.suptitle(f"thesis_cpu: Pareto fronts of {seeds} (cpu preset)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(runs: dict[int, dict], rows: list[dict], path: Path) -> dict:
    """The front's reduction curve against the supernet's largest (point estimates on the
    re-evaluated tokens, unpaired) with the paired decisions of `rows` on top (markers at
    each budget's allowance, error bars: their 95 % interval), one colour per config."""
    hws = list(next(iter(runs.values()))["fronts_by_hw"])
    fig, ax = plt.subplots(figsize=(7, 4.8))
    saved = {}
    n = len(runs)
    for hw in hws:
        c = curve(runs, hw, "supernet largest")
        x = CURVE_BUDGETS * 100
        with warnings.catch_warnings():  # budgets where no seed has a member: NaN, unplotted
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = (f(c, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
        (line,) = ax.plot(x, mean, lw=1, alpha=0.7, label=f"{hw}: front point estimates")
        ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        saved[hw] = {"budget_pct": x.tolist(), "per_seed": np.where(np.isnan(c), None, c).tolist()}
        paired = [
            r
            for r in rows
            if r["hw"] == hw and r["baseline"] == "supernet largest" and r["reduction"] is not None
        ]
        if paired:
            px = np.array([100 * r["budget_ppl"] / r["baseline_ppl"] for r in paired])
            py = np.array([r["reduction"] for r in paired])
            ci = np.array([r["reduction_ci"] or [r["reduction"]] * 2 for r in paired])
            ax.errorbar(
                px,
                py,
                yerr=[py - ci[:, 0], ci[:, 1] - py],
                fmt="o",
                ms=6,
                capsize=3,
                color=line.get_color(),
                label=f"{hw}: paired pick, whole split (95 % CI)",
            )
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("perplexity budget over the supernet's largest arch (%)")
    ax.set_ylabel("EDP reduction vs the largest arch (×)")
    seeds = f"{n} search seed" + ("s" if n != 1 else "")
    ax.set_title(
        f"thesis_cpu: EDP reduction vs perplexity budget ({seeds})\n"
        "lines: front on the re-evaluated tokens, unpaired (band: min–max over seeds);\n"
        "markers: the budget decisions, paired on the whole split",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return saved


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", type=Path, help="the study's results directory")
    args = ap.parse_args(argv)
    runs = load_runs(args.results)
    rows = table_rows(runs)

    # Supernet vs from scratch: the largest arch's perplexity with each training, on the
    # final split of the paired budget rows (the same windows for every seed).
    base = {r["baseline"]: r["baseline_ppl"] for r in rows}
    sup, scr = base.get("supernet largest"), base.get("from scratch")
    final_tokens = rows[0]["final_tokens"]
    split = (
        "whole validation split"
        if final_tokens == "all"
        else f"first {final_tokens} validation tokens"
    )
    het = {
        seed: heterogeneity([e for f in d["fronts_by_hw"].values() for e in f])
        for seed, d in runs.items()
    }
    times = {seed: d["time"] for seed, d in runs.items()}
    curves = plot_curves(runs, rows, args.results / "reduction_vs_budget.png")
    plot_fronts(runs, args.results / "fronts.png")
    first = next(iter(runs.values()))

    def ci(r: dict) -> str:
        c = r["reduction_ci"]
        return "–" if c is None else f"{c[0]:.2f}–{c[1]:.2f}"

    def delta(r: dict) -> str:
        if r["delta_ppl_full"] is None:
            return "–"
        flag = " (near edge)" if r["near_edge"] else ""
        return f"{r['delta_ppl_full']:+.2f} ± {r['delta_ppl_se']:.2f}{flag}"

    lines = [
        "# thesis_cpu: EDP reduction at the thesis's perplexity budgets",
        "",
        f"Seeds: {sorted(runs)}; preset {first['preset']}; regime {first['regime']}; "
        f"checkpoint {first['checkpoint']}; commit {git_commit()}.",
        f"Budgets are decided on the {split} (paired with the baseline on the same windows; "
        "`cosearch.evo.budgets`): the pick is the lowest-EDP evaluated arch on that hardware "
        "whose re-evaluated Δppl is within the budget. Reduction = EDP of the baseline's arch "
        "(the largest) on the same hardware / EDP of the pick; the reported pick is the median "
        "seed's; the interval spans every seed's 95 % bootstrap interval over token windows "
        "(token resampling and seed spread); 'near edge': Δppl within one SE of the budget. "
        "Baselines: from scratch = the largest arch trained alone with the same recipe and "
        "tokens (the thesis's baseline); supernet largest = the supernet's own largest subnet. "
        "Thesis (paper scale, vs its own baseline): 2.24× at +0.1 ppl, 10.56× at +1 ppl.",
        "",
    ]
    lines += markdown_table(
        ["hw", "baseline", "budget", "allowance (ppl)", "reduction", "95 % interval"]
        + ["pick (median seed)", "Δppl ± SE", "seeds picking", "per seed"],
        [
            [
                r["hw"],
                r["baseline"],
                r["budget"],
                f"{r['budget_ppl']:.2f}",
                "none within budget" if r["reduction"] is None else f"**{r['reduction']:.2f}×**",
                ci(r),
                f"`{r['arch']}`" if r["arch"] else "–",
                delta(r),
                f"{r['n_seeds_with_pick']}/{r['n_seeds']}",
                ", ".join("–" if x is None else f"{x:.2f}" for x in r["per_seed_reduction"]),
            ]
            for r in rows
        ],
    )
    lines += [
        "",
        f"## Supernet vs from scratch (largest arch, {split})",
        "",
        f"- supernet weights: ppl {sup:.2f}" if sup else "- supernet weights: n/a",
        f"- from scratch, same steps and tokens: ppl {scr:.2f}" if scr else "- from scratch: n/a",
    ]
    if sup and scr:
        lines.append(f"- ratio supernet / scratch: {sup / scr:.3f}")
    lines += ["", "## Layer heterogeneity of the fronts (both configs)", ""]
    lines += markdown_table(
        ["seed", "members", "multi-layer ones mixing shapes", "distinct heads", "distinct FFN"]
        + ["heads used", "FFN used"],
        [
            [seed, h["n"], f"{h['heterogeneous_share']:.0%}", f"{h['mean_distinct_heads']:.2f}"]
            + [f"{h['mean_distinct_ffn']:.2f}", h["heads_seen"], h["ffn_seen"]]
            for seed, h in het.items()
        ],
    )
    lines += ["", "## Time per seed (s)", ""]
    lines += markdown_table(
        ["seed", "search", "perplexity evals", "final re-evaluation", "n perplexity evals"],
        [
            [seed, f"{t['search_s']:.0f}", f"{t['ppl_eval_s']:.0f}", f"{t['final_eval_s']:.0f}"]
            + [t["ppl_evals"]]
            for seed, t in times.items()
        ],
    )
    write_text_atomic(args.results / "table.md", "\n".join(lines) + "\n")
    write_json_atomic(
        args.results / "summary.json",
        {
            "what": "thesis_cpu: EDP reduction per hardware config, baseline and perplexity "
            "budget, decided on re-evaluated paired perplexities (see table.md)",
            "command": "bash experiments/thesis_cpu/run.sh",
            "checkpoint": first["checkpoint"],
            "preset": first["preset"],
            "regime": first["regime"],
            "seeds": sorted(runs),
            "final_split": split,
            "entries": rows,
            "supernet_largest_ppl": sup,
            "scratch_largest_ppl": scr,
            "heterogeneity": het,
            "time": times,
            "reduction_curve_vs_supernet_largest": {
                "method": "front point estimates on the re-evaluated tokens (not paired)",
                **curves,
            },
            "git_commit": git_commit(),
        },
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
