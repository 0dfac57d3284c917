"""Joint arch + buffer-split search vs fixed configs, and the buffer heat map (report.md).

    python experiments/hw_cosearch/analyse.py --results experiments/hw_cosearch/results \
        --fixed experiments/thesis_cpu/results/seed0 \
        --fixed experiments/hw_cosearch/results/fixed-tiler

Reads `<results>/*/pareto.json` and `evaluated.csv` of each `--hw search` run and the
fixed-config runs of `--fixed` (per-config fronts in their pareto.json, compared with the
joint run of the same mapping regime), and writes to
`<results>`: `table.md`, `summary.json`, `heatmap.png` and `front_hw.png`.

Three comparisons:
- joint vs fixed on its own best config: per budget, the joint search's paired pick
  against that of the same search fixed on the joint front's best config
  (`<results>/<regime>-fixed-best`), against the from-scratch largest arch and then the
  supernet's largest on that config, with the verdict "hardware-only" where they agree
  within 1 % and "within the intervals" where their 95 % intervals overlap;
- joint vs the fixed thesis configs: per budget and baseline (from-scratch largest first,
  then the supernet's largest), each search's own paired decision on the final split (its
  pick, Δppl ± SE) with the EDP reduction and its 95 % interval rescaled to one reference,
  the largest arch on the thesis config gemmini-64k-256k;
- heat map (search perplexity, the same arch pool for every point): every arch the joint
  search evaluated is costed on every (scratchpad, accumulator) point of the grid; each cell
  is the lowest EDP among archs within the budget, relative to the largest arch on
  gemmini-64k-256k. Its minimum is the best fixed config for that pool.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosearch.config import get_preset  # noqa: E402
from cosearch.evo.budgets import BUDGETS  # noqa: E402
from cosearch.evo.pareto import (  # noqa: E402
    markdown_table,
    read_search_ppl,
    report_ppl,
)
from cosearch.evo.problem import Evaluation  # noqa: E402
from cosearch.evo.runner import SearchOptions, make_coster  # noqa: E402
from cosearch.hw.gemmini import DEFAULT_HW_SPACE, get_hw  # noqa: E402
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic  # noqa: E402
from cosearch.space import Arch  # noqa: E402

THESIS_HW = "gemmini-64k-256k"
HEAT_BUDGETS = (0.01, 0.05)  # relative search-perplexity budgets of the heat maps


def _load(path: Path) -> dict:
    d = json.loads((path / "pareto.json").read_text())
    config = path / "config.json"  # the search's options: its cost backend and scenario
    d["options"] = json.loads(config.read_text()).get("options", {}) if config.exists() else {}
    d["front"] = [Evaluation.from_dict(m) for m in d["front"]]
    d["fronts_by_hw"] = {
        h: [Evaluation.from_dict(m) for m in f] for h, f in d.get("fronts_by_hw", {}).items()
    }
    return d


def best_config(d: dict) -> str:
    """The joint search's own best config: the hardware of most of its paired budget
    picks against the from-scratch baseline (ties: the lower-EDP pick's), else the
    hardware of most front members."""
    picks = [
        r
        for r in d.get("edp_reduction", [])
        if r.get("method", "").startswith("paired") and r.get("pick_hw")
    ]
    picks = [r for r in picks if r["baseline"] == "from scratch"] or picks
    if picks:
        count: dict[str, list[float]] = {}
        for r in picks:
            count.setdefault(r["pick_hw"], []).append(r["edp"])
        return min(count, key=lambda h: (-len(count[h]), min(count[h])))
    count_f: dict[str, int] = {}
    for e in d["front"]:
        count_f[e.hw] = count_f.get(e.hw, 0) + 1
    return max(sorted(count_f), key=count_f.get)


def _paired_rows(d: dict, baseline: str, hw: str | None = None) -> list[dict]:
    """A search's paired budget decisions (pareto.json `edp_reduction`) against `baseline`,
    on config `hw` (all configs when None)."""
    return [
        r
        for r in d.get("edp_reduction", [])
        if r.get("method", "").startswith("paired")
        and r["baseline"] == baseline
        and (hw is None or r["hw"] == hw)
    ]


def _predicted_rows(d: dict, baseline: str, hw: str | None = None) -> list[dict]:
    """A predictor run's budget picks (pareto.json `edp_reduction`, front point
    estimates): a predictor's index has no split to decide on, so its front's pick is the
    decision. Empty for a supernet run (its point-estimate rows are not decisions)."""
    if d.get("ppl_source", "supernet") == "supernet":
        return []
    return [
        {**r, "pick_hw": r["hw"]}
        for r in d.get("edp_reduction", [])
        if r["baseline"] == baseline and (hw is None or r["hw"] == hw)
    ]


def paired_on(
    d: dict, baseline: str, budget: str, ref_edp: float, hw: str | None = None
) -> dict | None:
    """A search's paired budget decision (pareto.json `edp_reduction`) against `baseline`,
    with its EDP reduction and interval rescaled to `ref_edp` (the largest arch on one
    reference config). `hw`: only rows on that config (a fixed search's); None: a joint
    search, whose pick is the same for every baseline config (taken from the row with the
    lowest pick EDP). A predictor run has no paired decisions: its front's pick per
    budget, without Δppl or interval. None when the run has no such row."""
    rows = [r for r in _paired_rows(d, baseline, hw) if r["budget"] == budget]
    rows = rows or [r for r in _predicted_rows(d, baseline, hw) if r["budget"] == budget]
    if not rows:
        return None
    r = min(rows, key=lambda r: r["edp"] if r["edp"] is not None else float("inf"))
    out = {
        "baseline": baseline,
        "budget": budget,
        "budget_ppl": r.get("budget_ppl"),  # the allowance over the baseline (paired rows)
        "max_ppl": r.get("max_ppl"),  # the limit itself (a predictor run's point rows)
        "arch": r["arch"],
        "pick_hw": r.get("pick_hw"),
        "delta_ppl_full": r.get("delta_ppl_full"),
        "delta_ppl_se": r.get("delta_ppl_se"),
        "method": r.get("method"),
        "pick_ppl": r.get("ppl"),  # a predictor run's index of its pick
        "reduction": None,
        "reduction_ci": None,
    }
    if r["edp"] is not None:
        out["reduction"] = ref_edp / r["edp"]
        ci = r.get("reduction_ci")
        out["reduction_ci"] = [v * ref_edp / r["baseline_edp"] for v in ci] if ci else None
    return out


def joint_vs_fixed(joint: dict, fixed: dict, hw: str, baseline: str = "from scratch") -> list[dict]:
    """Per budget, the joint search's pick (from any config) against a fixed search's on
    `hw`, both against the same `baseline` arch ("from scratch", or the supernet's largest
    under its label) on `hw` (the same baseline EDP), both decided on the final split.
    'hardware-only' when the two reductions agree within 1 %: the joint search's gain is
    then only that of choosing `hw`; a difference whose two 95 % intervals overlap is
    reported as within them, not as a gain."""

    j = {r["budget"]: r for r in _paired_rows(joint, baseline, hw)}
    f = {r["budget"]: r for r in _paired_rows(fixed, baseline, hw)}
    out = []
    for label, _, _ in BUDGETS:
        a, b = j.get(label), f.get(label)
        if a is None or b is None:
            continue
        ra, rb = a["reduction"], b["reduction"]
        if ra is None and rb is None:
            verdict = "nothing within budget"
        elif rb is None:
            verdict = "only the joint search picks"
        elif ra is None:
            verdict = "only the fixed search picks (the joint one missed it)"
        elif abs(ra / rb - 1) <= 0.01:
            verdict = "hardware-only (same reduction within 1 %)"
        elif _overlap(a["reduction_ci"], b["reduction_ci"]):
            higher = "joint" if ra > rb else "fixed"
            verdict = f"{higher} higher by {max(ra, rb) / min(ra, rb):.3f}×, within the intervals"
        elif ra > rb:
            verdict = f"joint gain {ra / rb:.3f}×"
        else:
            verdict = "the fixed search does better (the joint one missed its pick)"
        out.append(
            {
                "baseline": baseline,
                "budget": label,
                "budget_ppl": a["budget_ppl"],
                "joint_reduction": ra,
                "joint_reduction_ci": a["reduction_ci"],
                "joint_pick": a["arch"],
                "joint_pick_hw": a.get("pick_hw"),
                "joint_delta_ppl": a["delta_ppl_full"],
                "joint_delta_ppl_se": a["delta_ppl_se"],
                "fixed_reduction": rb,
                "fixed_reduction_ci": b["reduction_ci"],
                "fixed_pick": b["arch"],
                "fixed_delta_ppl": b["delta_ppl_full"],
                "fixed_delta_ppl_se": b["delta_ppl_se"],
                "verdict": verdict,
            }
        )
    return out


def _overlap(a: list[float] | None, b: list[float] | None) -> bool:
    """Whether two (low, high) intervals overlap (False when either is missing)."""
    return bool(a and b) and a[0] <= b[1] and b[0] <= a[1]


def _pick_cell(arch: str | None, delta: float | None, se: float | None) -> str:
    if not arch:
        return "–"
    return f"`{arch}`" + ("" if delta is None else f" ({delta:+.2f} ± {se:.2f})")


def _reduction_cell(r: float | None, ci: list[float] | None) -> str:
    if r is None:
        return "–"
    return f"{r:.2f}×" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def coster_of(d: dict):
    """A coster that costs as the search `d` did: its regime, scenario, cost backend and
    tables (the analytical model where run.sh asked for it, not the default `auto`, which
    would mix in the real-Timeloop rows of the two thesis configs)."""
    o = d["options"]
    opts = SearchOptions(
        regime=d["regime"],
        scenario=o.get("scenario", SearchOptions.scenario),
        backend=o.get("backend", SearchOptions.backend),
        lut_dir=o.get("lut_dir"),
    )
    return make_coster(get_preset(d["preset"]), opts)


def heat(pool: dict[Arch, float], d: dict, budget: float) -> dict:
    config = get_preset(d["preset"])
    coster = coster_of(d)
    archs = list(pool)
    largest = config.space.largest()
    limit = pool[largest] * (1 + budget)
    ok = [a for a in archs if pool[a] <= limit]
    (ref,) = coster.cost_many([largest], THESIS_HW)
    cells = {}
    for hw in DEFAULT_HW_SPACE.configs():
        # only the archs whose softmax and LayerNorm rows the config can hold (the costs'
        # `violation`, the search's constraint); a config that runs none stays blank
        costs = coster.cost_many(ok, hw)
        runs = [(a, c) for a, c in zip(ok, costs, strict=True) if c.violation == 0]
        cell = {"sp_kib": hw.sp_kib, "acc_kib": hw.acc_kib, "n_can_run": len(runs)}
        if runs:
            a, c = min(runs, key=lambda ac: ac[1].edp)
            cell.update(edp=c.edp, rel=c.edp / ref.edp, arch=a.short())
        else:
            cell.update(edp=float("nan"), rel=float("nan"), arch=None)
        cells[hw.name] = cell
    return {"budget": budget, "limit": limit, "n_pool": len(archs), "n_ok": len(ok), "cells": cells}


def plot_heat(maps: dict[str, dict], path: Path, source_note: str = "") -> None:
    sps, accs = DEFAULT_HW_SPACE.sp_kib, DEFAULT_HW_SPACE.acc_kib
    fig, axes = plt.subplots(1, len(maps), figsize=(5.5 * len(maps), 4.6), squeeze=False)
    for ax, (title, m) in zip(axes[0], maps.items()):
        grid = np.full((len(sps), len(accs)), np.nan)
        for c in m["cells"].values():
            grid[sps.index(c["sp_kib"]), accs.index(c["acc_kib"])] = c["rel"]
        im = ax.imshow(grid, origin="lower", cmap="viridis_r")
        best = np.nanargmin(grid)
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                bold = (i * grid.shape[1] + j) == best
                ax.text(
                    j,
                    i,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="k"
                    if np.dot(im.cmap(im.norm(v))[:3], (0.299, 0.587, 0.114)) > 0.5
                    else "w",
                    fontweight="bold" if bold else "normal",
                )
        ax.set_xticks(range(len(accs)), [str(a) for a in accs])
        ax.set_yticks(range(len(sps)), [str(s) for s in sps])
        ax.set_xlabel("accumulator (KiB)")
        ax.set_ylabel("scratchpad (KiB)")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8, label=f"EDP / largest arch on {THESIS_HW}")
    fig.suptitle(
        "best arch's EDP at each buffer split (blank: over the 320 KiB budget or runs none)"
        + source_note
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_front_hw(runs: dict[str, dict], path: Path, source_note: str = "") -> None:
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, (regime, d) in zip(axes[0], runs.items()):
        by_hw: dict[str, list[Evaluation]] = {}
        for e in d["front"]:
            by_hw.setdefault(e.hw, []).append(e)
        for hw, es in sorted(by_hw.items(), key=lambda kv: -len(kv[1])):
            ax.plot(
                [e.edp for e in es],
                [report_ppl(e) for e in es],
                "o",
                ms=4,
                label=f"{hw} ({len(es)})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("EDP per sequence (J·s, modelled)")
        ax.set_ylabel(
            "validation perplexity (re-evaluated)" if not source_note else "perplexity index"
        )
        ax.set_title(
            f"joint front, {regime} regime: hardware of each member{source_note}", fontsize=9
        )
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--results", type=Path, help="this study's results directory")
    ap.add_argument(
        "--fixed",
        type=Path,
        action="append",
        default=[],
        help="a fixed-config search run to compare with (repeatable; matched by regime)",
    )
    ap.add_argument(
        "--best-config",
        type=Path,
        metavar="RUN",
        help="print the joint search RUN's own best config (for the fixed search on it) and stop",
    )
    args = ap.parse_args()
    if args.best_config:
        print(best_config(_load(args.best_config)))
        return
    if args.results is None:
        ap.error("--results is required (or --best-config RUN)")
    loaded = {p.parent.name: _load(p.parent) for p in sorted(args.results.glob("*/pareto.json"))}
    runs = {k: d for k, d in loaded.items() if d["hw"] == "search"}
    if not runs:
        raise SystemExit(
            f"no */pareto.json under {args.results}; run experiments/hw_cosearch/run.sh"
        )
    fixed_runs = [_load(f) for f in args.fixed]
    # where the perplexities come from: a predictor's label travels into every output
    source = "/".join(sorted({d.get("ppl_source", "supernet") for d in runs.values()}))
    note = "" if source == "supernet" else f" (perplexity: {source}, NOT measured)"

    first = next(iter(runs.values()))
    largest = next(b["name"] for b in first["baselines"] if "largest" in b["name"])
    lines = [
        f"# hw_cosearch: joint arch + buffer-split search{note}",
        "",
        f"commit {git_commit()}; SRAM budget 320 KiB (scratchpad + accumulator).",
        "",
        "## Joint search vs the fixed thesis configs",
        "",
        "Per budget, each search's own paired decision on the final split (the lowest-EDP "
        "evaluated arch, on any of its configs, whose Δppl to the baseline arch passes the "
        "budget; Δppl ± its SE), with its EDP reduction against the largest arch on "
        f"{THESIS_HW} (the same arch for both baselines) and the decision's 95 % interval "
        "over the split's windows, rescaled to that reference."
        if source == "supernet"
        else f"Per budget, each search's front pick by the {source} index (largest arch = "
        "100; NOT measured, no split to decide on, so no Δppl SE or interval): the "
        "lowest-EDP front member, on any of its configs, within the budget, with its EDP "
        f"reduction against the largest arch on {THESIS_HW}.",
        "",
    ]
    summary = {"runs": {}, "git_commit": git_commit(), "ppl_source": source}
    summary["vs_thesis_hw"] = []
    for regime, d in runs.items():
        base = next(b for b in d["baselines"] if b["name"] == largest)
        cfg = get_preset(d["preset"])
        coster = coster_of(d)
        (ref,) = coster.cost_many([cfg.space.largest()], THESIS_HW)
        searches: dict[str, tuple[dict, str | None]] = {"joint (--hw search)": (d, None)}
        for fixed in fixed_runs:
            if fixed["regime"] == d["regime"]:
                searches.update({f"fixed {h}": (fixed, h) for h in fixed["fronts_by_hw"]})
        for baseline in ("from scratch", largest):  # the thesis's baseline first
            for label, _, relative in BUDGETS:
                if source != "supernet" and not relative:
                    continue  # an index of 100: +x points is the +x % row
                for name, (run_d, hw) in searches.items():
                    c = paired_on(run_d, baseline, label, ref.edp, hw)
                    if c is not None:
                        summary["vs_thesis_hw"].append({"regime": d["regime"], "search": name, **c})
        hw_count: dict[str, int] = {}
        for e in d["front"]:
            hw_count[e.hw] = hw_count.get(e.hw, 0) + 1
        summary["runs"][regime] = {
            "regime": d["regime"],
            "largest_ppl": base["ppl"],
            "largest_edp_thesis_hw": ref.edp,
            "front_hw_counts": hw_count,
            "time": d["time"],
        }
    lines += markdown_table(
        [
            "regime",
            "baseline",
            "budget",
            "search",
            "pick (Δppl ± SE) (hw)" if source == "supernet" else f"pick (hw) {source} index",
            "EDP reduction",
        ],
        [
            [
                c["regime"],
                c["baseline"],
                c["budget"],
                c["search"],
                _pick_cell(c["arch"], c["delta_ppl_full"], c["delta_ppl_se"])
                + (f" ({c['pick_hw']})" if c["arch"] else "")
                + (
                    f" index {c['pick_ppl']:.2f}"
                    if c["arch"] and c["delta_ppl_full"] is None and c["pick_ppl"] is not None
                    else ""
                ),
                _reduction_cell(c["reduction"], c["reduction_ci"])
                if c["arch"]
                else "none within budget",
            ]
            for c in summary["vs_thesis_hw"]
        ],
    )

    # Joint vs a fixed search on the joint search's own best config (paired, final split).
    lines += ["", "## Joint search vs a fixed search on its own best config", ""]
    summary["joint_vs_fixed"] = {}
    for regime, d in runs.items():
        on_best = args.results / f"{regime}-fixed-best"
        if not (on_best / "pareto.json").exists():
            lines.append(f"- {regime}: no fixed search on the best config ({on_best} missing)")
            continue
        fixed = _load(on_best)
        hw = fixed["hw"]
        cmp = []
        for baseline in ("from scratch", largest):  # the thesis's baseline first
            got = joint_vs_fixed(d, fixed, hw, baseline)
            cmp += got
            if not got:
                continue
            lines.append(
                f"{regime} regime, best config of the joint front: {hw}; reductions against "
                f"the {baseline} largest arch on {hw}, decided on the final split "
                f"(95 % CI over the split's windows; Δppl ± SE to that baseline):"
                if baseline == "from scratch"
                else f"{regime} regime, {hw}; reductions against the {baseline} arch on {hw}:"
            )
            lines.append("")
            lines += markdown_table(
                ["budget", "joint pick (hw)", "joint", "fixed pick", "fixed", "verdict"],
                [
                    [
                        c["budget"],
                        _pick_cell(c["joint_pick"], c["joint_delta_ppl"], c["joint_delta_ppl_se"])
                        + (f" ({c['joint_pick_hw']})" if c["joint_pick"] else ""),
                        _reduction_cell(c["joint_reduction"], c["joint_reduction_ci"]),
                        _pick_cell(c["fixed_pick"], c["fixed_delta_ppl"], c["fixed_delta_ppl_se"]),
                        _reduction_cell(c["fixed_reduction"], c["fixed_reduction_ci"]),
                        c["verdict"],
                    ]
                    for c in got
                ],
            )
            lines.append("")
        summary["joint_vs_fixed"][regime] = {"best_config": hw, "rows": cmp}

    lines += ["", "## Hardware of the joint fronts", ""]
    for regime, s in summary["runs"].items():
        counts = ", ".join(
            f"{h}: {n}" for h, n in sorted(s["front_hw_counts"].items(), key=lambda kv: -kv[1])
        )
        sp_acc = [get_hw(h) for h in s["front_hw_counts"]]
        big_acc = sum(
            n for h, n in s["front_hw_counts"].items() if get_hw(h).acc_kib > get_hw(h).sp_kib
        )
        lines.append(
            f"- {regime}: {counts} — {big_acc} of {sum(s['front_hw_counts'].values())} "
            f"members have a larger accumulator than scratchpad "
            f"({len(sp_acc)} distinct configs)"
        )

    maps = {}
    lines += ["", "## Heat map: best arch's EDP at each buffer split", ""]
    for regime, d in runs.items():
        pool = read_search_ppl(args.results / regime / "evaluated.csv")
        for budget in HEAT_BUDGETS:
            m = heat(pool, d, budget)
            key = f"{d['regime']} regime, search ppl within +{budget:.0%} of the largest"
            maps[key] = m
            can = {h: c for h, c in m["cells"].items() if c["arch"] is not None}
            best = min(can.items(), key=lambda kv: kv[1]["edp"])
            worst = max(can.items(), key=lambda kv: kv[1]["edp"])
            lines.append(
                f"- {key}: {m['n_ok']} of {m['n_pool']} archs qualify; best config "
                f"{best[0]} ({best[1]['rel']:.3f} of the largest on {THESIS_HW}, arch "
                f"{best[1]['arch']}), worst {worst[0]} ({worst[1]['rel']:.3f}); "
                f"{THESIS_HW}: {m['cells'][THESIS_HW]['rel']:.3f}, gemmini-256k-64k: "
                f"{m['cells']['gemmini-256k-64k']['rel']:.3f}"
            )
    summary["heatmaps"] = maps
    plot_heat(
        {k: v for k, v in maps.items() if f"+{HEAT_BUDGETS[0]:.0%}" in k},
        args.results / "heatmap.png",
        note,
    )
    plot_front_hw(runs, args.results / "front_hw.png", note)
    write_text_atomic(args.results / "table.md", "\n".join(lines) + "\n")
    write_json_atomic(args.results / "summary.json", summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
