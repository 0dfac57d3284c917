"""Pareto fronts and the search's reports: hypervolume, EDP reduction, heterogeneity,
plots, CSV/JSON/Markdown writers.

Owns everything computed *from* evaluated (arch, hw) pairs after or during the search. It
must not evaluate anything itself: it takes `Evaluation` records (or plain objective
vectors) and writes files. All objectives are minimised.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cosearch.evo.budgets import BUDGETS
from cosearch.runinfo import write_csv_atomic
from cosearch.space import Arch

if TYPE_CHECKING:
    from cosearch.evo.problem import Evaluation


# ----- fronts and hypervolume -----------------------------------------------------------
def nondominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (minimisation); of duplicates, the first."""
    pts = np.asarray(points, dtype=float)
    if len(pts) == 0:
        return []
    keep: list[int] = []
    order = np.lexsort(pts.T[::-1])  # by first objective, ties by the next ones
    for i in order:
        p = pts[i]
        dominated = False
        for j in keep:
            q = pts[j]
            if np.all(q <= p):  # equal points count as dominated: keep one
                dominated = True
                break
        if not dominated:
            keep.append(int(i))
    return sorted(keep)


def hypervolume(
    points: Sequence[Sequence[float]], ref: Sequence[float], *, normalize: bool = False
) -> float:
    """Hypervolume dominated by `points` up to the reference point `ref` (minimisation).

    With `normalize`, objectives are divided by `ref` first (all must be positive), so the
    value is the fraction of the box [0, ref] that is dominated. Points that do not
    strictly dominate `ref` add nothing. Uses `moocore`, which DEAP's own hypervolume
    (`deap.benchmarks.tools.hypervolume`) calls.
    """
    ref_a = np.asarray(ref, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref_a))
    pts = pts[np.all(pts < ref_a, axis=1)]
    if normalize:
        if np.any(ref_a <= 0):
            raise ValueError(f"normalized hypervolume needs a positive reference, got {ref}")
        pts, ref_a = pts / ref_a, np.ones_like(ref_a)
    if len(pts) == 0:
        return 0.0
    if len(ref_a) == 1:
        return float(ref_a[0] - pts[:, 0].min())
    import moocore

    return float(moocore.hypervolume(pts, ref=ref_a))


def pareto_front(evals: Sequence[Evaluation], objectives: Sequence[str]) -> list[Evaluation]:
    """The feasible non-dominated evaluations, sorted by the first objective."""
    feas = [e for e in evals if e.feasible]
    idx = nondominated([[e.objective(o) for o in objectives] for e in feas])
    front = [feas[i] for i in idx]
    return sorted(front, key=lambda e: tuple(e.objective(o) for o in objectives))


# ----- summary numbers ------------------------------------------------------------------
def report_ppl(ev: Evaluation) -> float:
    """The perplexity reports use: full validation split if re-evaluated, else search's."""
    return ev.extra.get("ppl_valid", ev.ppl)


@dataclass(frozen=True)
class Baseline:
    """A reference model on one hardware config: perplexity and EDP to beat."""

    name: str
    hw: str
    ppl: float
    edp: float
    latency_s: float = math.nan
    energy_J: float = math.nan


def edp_reductions(
    front: Sequence[Evaluation],
    baseline: Baseline,
    thresholds: Sequence[tuple[str, float, bool]] = BUDGETS,
) -> list[dict]:
    """For each perplexity budget (label, delta, relative?): the front member (on the
    baseline's hardware) with the lowest EDP whose perplexity is within the budget, and
    the EDP reduction factor."""
    rows = []
    members = [e for e in front if e.hw == baseline.hw]
    for label, delta, relative in thresholds:
        limit = baseline.ppl * (1 + delta) if relative else baseline.ppl + delta
        ok = [e for e in members if report_ppl(e) <= limit]
        best = min(ok, key=lambda e: e.edp) if ok else None
        rows.append(
            {
                "baseline": baseline.name,
                "hw": baseline.hw,
                "budget": label,
                "max_ppl": limit,
                "arch": best.arch.short() if best else None,
                "ppl": report_ppl(best) if best else None,
                "edp": best.edp if best else None,
                "reduction": baseline.edp / best.edp if best else None,
            }
        )
    return rows


def heterogeneity(front: Sequence[Evaluation]) -> dict:
    """How much the layers of front members differ: share of members whose layers are
    not all alike, and the mean number of distinct head counts / FFN widths per member."""
    if not front:
        return {
            "n": 0,
            "heterogeneous_share": 0.0,
            "mean_distinct_heads": 0.0,
            "mean_distinct_ffn": 0.0,
            "heads_seen": [],
            "ffn_seen": [],
        }
    dh = [len(set(e.arch.heads)) for e in front]
    df = [len(set(e.arch.d_ffn)) for e in front]
    multi = [e for e in front if e.arch.n_layers > 1]
    het = [e for e in multi if len(set(e.arch.heads)) > 1 or len(set(e.arch.d_ffn)) > 1]
    return {
        "n": len(front),
        "n_multilayer": len(multi),
        "heterogeneous_share": len(het) / len(multi) if multi else 0.0,
        "mean_distinct_heads": float(np.mean(dh)),
        "mean_distinct_ffn": float(np.mean(df)),
        "mean_ffn_range": float(np.mean([max(e.arch.d_ffn) - min(e.arch.d_ffn) for e in front])),
        "heads_seen": sorted({h for e in front for h in e.arch.heads}),
        "ffn_seen": sorted({f for e in front for f in e.arch.d_ffn}),
    }


# ----- writers --------------------------------------------------------------------------
CSV_FIELDS = (
    "ppl_source",
    "arch_id",
    "hw",
    "n_layers",
    "d_model",
    "heads",
    "d_ffn",
    "ppl_search",
    "ppl_valid",
    "ppl_test",
    "latency_ms",
    "energy_mJ",
    "edp_Js",
    "params",
    "flops",
    "feasible",
    "violation",
    "generation",
)


def _csv_row(e: Evaluation, ppl_source: str = "supernet") -> dict:
    return {
        "ppl_source": ppl_source,
        "arch_id": e.arch.short(),
        "hw": e.hw,
        "n_layers": e.arch.n_layers,
        "d_model": e.arch.d_model,
        "heads": "|".join(map(str, e.arch.heads)),
        "d_ffn": "|".join(map(str, e.arch.d_ffn)),
        "ppl_search": repr(e.ppl),
        "ppl_valid": repr(e.extra["ppl_valid"]) if "ppl_valid" in e.extra else "",
        "ppl_test": repr(e.extra["ppl_test"]) if "ppl_test" in e.extra else "",
        "latency_ms": repr(e.latency_s * 1e3),
        "energy_mJ": repr(e.energy_J * 1e3),
        "edp_Js": repr(e.edp),
        "params": e.params,
        "flops": e.flops,
        "feasible": int(e.feasible),
        "violation": repr(e.violation),
        "generation": e.generation,
    }


def write_csv(
    path: str | os.PathLike, evals: Sequence[Evaluation], ppl_source: str = "supernet"
) -> None:
    """Rows of `evals`; `ppl_source` says where perplexities come from (supernet: measured)."""
    write_csv_atomic(path, CSV_FIELDS, (_csv_row(e, ppl_source) for e in evals))


def read_search_ppl(path: str | os.PathLike) -> dict[Arch, float]:
    """Every arch of an `evaluated.csv` (written by `write_csv`) with its search perplexity."""
    with open(path, newline="") as f:
        return {
            Arch(
                int(r["n_layers"]),
                int(r["d_model"]),
                tuple(int(x) for x in r["heads"].split("|")),
                tuple(int(x) for x in r["d_ffn"].split("|")),
            ): float(r["ppl_search"])
            for r in csv.DictReader(f)
        }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Lines of a Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]


def write_history_csv(path: str | os.PathLike, history: Sequence[dict]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    write_csv_atomic(path, keys, history)


# ----- plots ----------------------------------------------------------------------------
_METRICS = {  # objective -> (Evaluation attribute, axis label, scale to the label's unit)
    "edp": ("edp", "EDP (J·s)", 1.0),
    "latency": ("latency_s", "latency (ms)", 1e3),
    "energy": ("energy_J", "energy (mJ)", 1e3),
}


def plot_front(
    path: str | os.PathLike,
    metric: str,
    evaluated: Sequence[Evaluation],
    front: Sequence[Evaluation],
    baselines: Sequence[Baseline],
    title: str = "",
    ppl_source: str = "supernet",
) -> None:
    """Perplexity vs `metric` (edp/latency/energy): every evaluated pair, the front, the
    baselines and lines at baseline perplexity +0.1 and +1 (the thesis's Figure 3.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attr, label, scale = _METRICS[metric]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    feas = [e for e in evaluated if e.feasible]
    if feas:
        ax.scatter(
            [getattr(e, attr) * scale for e in feas],
            [e.ppl for e in feas],
            s=8,
            c="0.75",
            label="evaluated (search subset ppl)",
            zorder=1,
        )
    for k, hw in enumerate(sorted({e.hw for e in front})):
        pts = sorted((getattr(e, attr) * scale, report_ppl(e)) for e in front if e.hw == hw)
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", ms=4, color=f"C{k}", label=f"front on {hw}", zorder=3)
    styles = {0: ":", 1: "--"}
    for k, b in enumerate(baselines):
        x = getattr(b, attr) * scale
        if not math.isfinite(x):
            continue
        ax.scatter(
            [x], [b.ppl], marker="*", s=120, color=f"C{k + 3}", zorder=4, label=f"{b.name} ({b.hw})"
        )
        for i, d in enumerate((0.1, 1.0)):
            ax.axhline(
                b.ppl + d,
                color=f"C{k + 3}",
                ls=styles[i],
                lw=0.8,
                label=f"{b.name} +{d:g} ppl" if k == 0 else None,
            )
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ylabel = "perplexity (front: full validation when re-evaluated)"
    if ppl_source != "supernet":
        ylabel = f"{ppl_source} perplexity (not measured)"
    ax.set_ylabel(ylabel)
    if front:
        lo = min(report_ppl(e) for e in front)
        hi = max([report_ppl(e) for e in front] + [b.ppl + 1.5 for b in baselines])
        ax.set_ylim(lo - 0.05 * (hi - lo + 1), hi + 0.1 * (hi - lo + 1))
    ax.set_title(title or f"perplexity vs {metric}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_hypervolume(path: str | os.PathLike, histories: dict[str, Sequence[dict]]) -> None:
    """Normalised hypervolume of the population per generation, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, hist) in enumerate(histories.items()):
        gens = [r["generation"] for r in hist]
        ax.plot(
            gens,
            [r["hypervolume"] for r in hist],
            "o-",
            ms=3,
            color=f"C{k}",
            label=f"{name}: population",
        )
        if hist and "hypervolume_archive" in hist[0]:
            ax.plot(
                gens,
                [r["hypervolume_archive"] for r in hist],
                "--",
                color=f"C{k}",
                label=f"{name}: all evaluated",
            )
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume (fraction of reference box)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----- summary.md -----------------------------------------------------------------------
def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec) if isinstance(x, (int, float)) else str(x)


def _reduction_text(r: dict) -> str:
    if r.get("reduction") is None:
        return "none within budget"
    ci = r.get("reduction_ci")
    text = f"{r['reduction']:.2f}x" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else "")
    return text + (" !" if r.get("near_edge") else "")


def _method_text(r: dict) -> str:
    text = r.get("method", "")
    if "re_evaluated" in r:
        text += f"; {r['re_evaluated']} re-scored"
        if r.get("screened_out"):
            text += f", {r['screened_out']} screened out on {r.get('screen_tokens')} tokens"
        if r.get("capped"):
            text += f"; **capped** at {r.get('max_evals')}"
    return text


def summary_markdown(
    *,
    header: dict,
    front: Sequence[Evaluation],
    baselines: Sequence[Baseline],
    histories: dict[str, Sequence[dict]],
    n_evaluated: int,
    regime: str,
    reductions: Sequence[dict] | None = None,
    ppl_source: str = "supernet",
) -> str:
    """The run's human-readable report (EDP reductions, front, heterogeneity)."""
    lines = ["# Co-search summary", ""]
    if ppl_source != "supernet":
        lines = [
            f"# Co-search summary: perplexities from a {ppl_source}, NOT measured",
            "",
            f"Every perplexity in this file is a {ppl_source} estimate, not a measurement.",
            "",
        ]
    for k, v in header.items():
        lines.append(f"- **{k}**: {v}")
    lines += [
        f"- **evaluated pairs**: {n_evaluated}; **front size**: {len(front)}",
        f"- **mapping regime** of latency/energy: `{regime}`",
        "",
    ]
    for name, hist in histories.items():
        if hist:
            arch = (
                f" (all evaluated: {hist[-1]['hypervolume_archive']:.4f})"
                if "hypervolume_archive" in hist[-1]
                else ""
            )
            lines.append(
                f"- hypervolume of the population ({name}, fraction of the reference "
                f"box): generation 0 {hist[0]['hypervolume']:.4f} -> generation "
                f"{hist[-1]['generation']} {hist[-1]['hypervolume']:.4f}{arch}"
            )
    lines += [
        "",
        "## EDP reduction vs baselines",
        "",
        "Per budget, the lowest-EDP evaluated arch on the baseline's hardware whose "
        "perplexity difference to the baseline, re-measured on the final split and paired "
        "over the same windows, is within the budget (method column). Δppl ± its SE; "
        "reduction with a 95% bootstrap interval over the split's windows; '!' marks a "
        "pick within one SE of the budget's edge; pick rate = share of resamples in which "
        "some candidate meets the budget; the method column counts the candidates "
        "re-scored, those dropped by a cheaper screen (still > 3 SE over the budget), and "
        "says 'capped' where the cap on re-scores (--budget-max-evals) stopped the scan, "
        "so that a lower-EDP pick, or any pick, may exist beyond it. Rows whose method "
        "says 'point estimates' (a perplexity predictor, or a baseline without windows "
        "to pair) decide on the front's search perplexity: their Δppl has no SE and "
        "their reduction no interval. The thesis "
        "(paper space, Timeloop energy, RTL latency) reports 2.24x at +0.1 ppl and "
        "10.56x at +1 ppl vs the from-scratch largest model.",
        "",
        "| baseline | hw | baseline ppl | budget | allowance (ppl) | pick | Δppl ± SE | "
        "reduction (95% CI) | pick rate | method |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reductions or []:
        d, se = r.get("delta_ppl_full"), r.get("delta_ppl_se")
        base = r.get(
            "baseline_ppl",
            next((b.ppl for b in baselines if b.name == r["baseline"] and b.hw == r["hw"]), None),
        )
        allow = r.get("budget_ppl")  # point-estimate rows carry the limit, max_ppl
        if allow is None and r.get("max_ppl") is not None and base is not None:
            allow = r["max_ppl"] - base
        if d is not None:
            dtxt = f"{d:+.2f} ± {se:.2f}"
        elif r.get("ppl") is not None and base is not None:
            dtxt = f"{r['ppl'] - base:+.3f} (point)"  # a front point estimate: no SE
        else:
            dtxt = "–"
        red = (
            f"{r['reduction']:.2f}x"
            if r.get("reduction") and "reduction_ci" not in r
            else _reduction_text(r)
        )
        lines.append(
            f"| {r['baseline']} | {r['hw']} | {_fmt(base, '.2f')} | {r['budget']} | "
            f"{_fmt(allow, '.3f')} | {r.get('arch') or '–'} | {dtxt} | {red} | "
            f"{_fmt(r.get('pick_rate'), '.2f')} | {_method_text(r)} |"
        )
    het = heterogeneity(front)
    lines += [
        "",
        "## Layer heterogeneity of the front",
        "",
        f"- {het['n']} members; {het.get('n_multilayer', 0)} with more than one layer, "
        f"of which {100 * het['heterogeneous_share']:.0f}% mix layer shapes",
        f"- mean distinct head counts per member: {het['mean_distinct_heads']:.2f}; "
        f"mean distinct FFN widths: {het['mean_distinct_ffn']:.2f}; mean FFN range "
        f"within a member: {het.get('mean_ffn_range', 0):.0f}",
        f"- head counts used: {het['heads_seen']}; FFN widths used: {het['ffn_seen']}",
        "",
        "## Front",
        "",
        "| arch | hw | ppl (search) | ppl valid | ppl test | latency (ms) | "
        "energy (mJ) | EDP (J·s) | params | GFLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    int8 = any("delta_ppl_int8" in e.extra for e in front)
    if int8:  # an int8 search: each member's int8 - float32 (report.finish)
        lines[-2] += " Δppl int8 − f32 ± SE |"
        lines[-1] += "---|"
    for e in front:
        lines.append(
            f"| {e.arch.short()} | {e.hw} | {e.ppl:.3f} | {_fmt(e.extra.get('ppl_valid'), '.3f')}"
            f" | {_fmt(e.extra.get('ppl_test'), '.3f')} | {e.latency_s * 1e3:.4g} | "
            f"{e.energy_J * 1e3:.4g} | {e.edp:.4g} | {e.params:,} | {e.flops / 1e9:.3g} |"
        )
        if int8:
            d, se = e.extra.get("delta_ppl_int8"), e.extra.get("delta_ppl_int8_se")
            lines[-1] += f" {d:+.3f} ± {se:.3f} |" if d is not None else " – |"
    return "\n".join(lines) + "\n"
