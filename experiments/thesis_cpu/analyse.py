"""Seed table and plots of the thesis_cpu study (see report.md).

    python experiments/thesis_cpu/analyse.py experiments/thesis_cpu/results

Reads every `seed*/pareto.json` under the results directory (written by
`python -m cosearch.search`), and writes `table.md`, `summary.json`, `fronts.png` and
`reduction_vs_budget.png` there: EDP reductions at the thesis's perplexity budgets per
hardware config and baseline, with mean and spread over the seeds; supernet vs from-scratch
perplexity; layer heterogeneity of the fronts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosearch.evo.pareto import (  # noqa: E402
    THRESHOLDS,
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


def _stats(xs: list[float | None]) -> dict:
    ok = [x for x in xs if x is not None]
    if not ok:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {
        "n": len(ok),
        "mean": statistics.fmean(ok),
        "std": statistics.stdev(ok) if len(ok) > 1 else 0.0,
        "min": min(ok),
        "max": max(ok),
    }


def _fmt(s: dict) -> str:
    if not s["n"]:
        return "none within budget"
    return f"{s['mean']:.2f}× ± {s['std']:.2f} (min {s['min']:.2f}, max {s['max']:.2f}, n={s['n']})"


def table_rows(runs: dict[int, dict]) -> list[dict]:
    rows = []
    first = next(iter(runs.values()))
    for hw in first["fronts_by_hw"]:
        for name in ("supernet largest", "from scratch"):
            for label, delta, relative in THRESHOLDS:
                per_seed, archs = [], []
                for d in runs.values():
                    b = next((b for b in d["baselines"] if b.hw == hw and b.name == name), None)
                    if b is None:
                        continue
                    (r,) = edp_reductions(d["fronts_by_hw"][hw], b, [(label, delta, relative)])
                    per_seed.append(r["reduction"])
                    archs.append(r["arch"])
                if per_seed:
                    rows.append(
                        {
                            "hw": hw,
                            "baseline": name,
                            "budget": label,
                            "per_seed": per_seed,
                            "archs": archs,
                            **{"stats": _stats(per_seed)},
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
    fig.suptitle(f"thesis_cpu: Pareto fronts of {len(runs)} search seeds (cpu preset)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(runs: dict[int, dict], path: Path) -> dict:
    hws = list(next(iter(runs.values()))["fronts_by_hw"])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    saved = {}
    for hw in hws:
        c = curve(runs, hw, "supernet largest")
        x = CURVE_BUDGETS * 100
        with warnings.catch_warnings():  # budgets where no seed has a member: NaN, unplotted
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, lo, hi = (f(c, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
        ax.plot(x, mean, label=f"{hw} ({len(c)} seeds)")
        ax.fill_between(x, lo, hi, alpha=0.2)
        saved[hw] = {"budget_pct": x.tolist(), "per_seed": np.where(np.isnan(c), None, c).tolist()}
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("perplexity budget over the supernet's largest arch (%)")
    ax.set_ylabel("EDP reduction vs the largest arch (×)")
    ax.set_title(
        "thesis_cpu: EDP reduction vs perplexity budget\n(line: mean, band: min–max over seeds)"
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", type=Path, help="the study's results directory")
    args = ap.parse_args()
    runs = load_runs(args.results)
    rows = table_rows(runs)

    # Supernet vs from scratch: the largest arch's perplexity with each training.
    base = {
        (b.hw, b.name): b.ppl for d in runs.values() for b in d["baselines"] if b.hw
    }  # the same for every seed (same tokens), so any seed's value will do
    hw0 = next(iter(next(iter(runs.values()))["fronts_by_hw"]))
    sup, scr = base.get((hw0, "supernet largest")), base.get((hw0, "from scratch"))
    het = {
        seed: heterogeneity([e for f in d["fronts_by_hw"].values() for e in f])
        for seed, d in runs.items()
    }
    times = {seed: d["time"] for seed, d in runs.items()}
    curves = plot_curves(runs, args.results / "reduction_vs_budget.png")
    plot_fronts(runs, args.results / "fronts.png")

    lines = [
        "# thesis_cpu: EDP reduction at the thesis's perplexity budgets",
        "",
        f"Seeds: {sorted(runs)}; preset {next(iter(runs.values()))['preset']}; "
        f"regime {next(iter(runs.values()))['regime']}; commit {git_commit()}.",
        "Reduction = EDP of the baseline's arch (the largest) on the same hardware / EDP of the "
        "lowest-EDP member of that hardware's front within the budget; perplexities are "
        "re-evaluated validation ones. Thesis (paper scale): 2.24× at +0.1 ppl, 10.56× at +1 ppl.",
        "",
    ]
    lines += markdown_table(
        ["hw", "baseline", "budget", "reduction, mean ± std over seeds", "per seed", "best archs"],
        [
            [
                r["hw"],
                r["baseline"],
                r["budget"],
                _fmt(r["stats"]),
                ", ".join("–" if x is None else f"{x:.2f}" for x in r["per_seed"]),
                ", ".join(a or "–" for a in r["archs"]),
            ]
            for r in rows
        ],
    )
    lines += [
        "",
        "## Supernet vs from scratch (largest arch, validation)",
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
            "seeds": sorted(runs),
            "rows": rows,
            "supernet_largest_ppl": sup,
            "scratch_largest_ppl": scr,
            "heterogeneity": het,
            "time": times,
            "reduction_curve_vs_supernet_largest": curves,
            "git_commit": git_commit(),
        },
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
