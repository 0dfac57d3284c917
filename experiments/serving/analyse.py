"""The serving study's tables and figures, from the cost model and the searches' results.

    python experiments/serving/analyse.py [--archs 2000]

1. Buffer split per scenario and regime, cost model only (no perplexity needed): every
   sampled `cpu` arch (seed 0, plus the largest and smallest) costed on every config of the
   hardware space (16-512 KiB buffers, scratchpad + accumulator <= 320 KiB, 22 configs;
   configs on which an arch cannot run are skipped); per config the geometric mean over
   the archs of its EDP relative to each arch's own best (the global best is the lowest,
   among configs that run every arch), and per arch whether its own best config is the
   global one. -> results/buffer_split.csv, results/per_arch.json, results/heatmap.png
2. The largest arch's decode step, utilisation and where its time goes. -> per_arch.json
3. The fronts of the six searches (search.py: results/<scenario>-<regime>/pareto.json):
   members, their configs, the config of the lowest-EDP member. -> results/fronts.csv,
   results/fronts.png
Everything here is a model estimate (the analytical Gemmini model, LUTs in lut/cpu/...),
except the search perplexities (measured on the supernet, first --eval-tokens tokens).
Writes results/summary.md with the tables the report quotes.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cosearch.hw.gemmini import DEFAULT_HW_SPACE
from cosearch.hw.lut import Coster
from cosearch.hw.workload import kv_cache_bytes, scenario_ops
from cosearch.runinfo import git_commit, write_csv_atomic, write_json_atomic, write_text_atomic
from cosearch.scenario import get_scenario
from cosearch.space import PRESETS, Arch

HERE = Path(__file__).parent
OUT = HERE / "results"
SCENARIOS = ("prefill", "decode", "chat")
REGIMES = ("optimal", "gemmini-tiler")
SP = PRESETS["cpu"]


def split_table(archs: list[Arch], scenario: str, regime: str) -> dict:
    cfgs = DEFAULT_HW_SPACE.configs()
    coster = Coster(SP, regime=regime, scenario=scenario, backend="analytical")
    edp = np.full((len(archs), len(cfgs)), np.inf)
    for j, hw in enumerate(cfgs):
        for i, c in enumerate(coster.cost_many(archs, hw)):
            if c.violation == 0:
                edp[i, j] = c.edp
    can_all = np.isfinite(edp).all(0)
    rel = edp / edp.min(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.exp(np.log(rel).mean(0))
    geo[~can_all] = np.inf
    g = int(np.argmin(geo))
    own = edp.argmin(1)
    names = [c.name for c in cfgs]
    largest = archs.index(SP.largest())
    smallest = archs.index(SP.smallest())
    return {
        "configs": names,
        "geo_rel_edp": [float(x) for x in geo],
        "share_best": [float(np.mean(own == j)) for j in range(len(cfgs))],
        "global_best": names[g],
        "share_archs_best_is_global": float(np.mean(own == g)),
        "loss_of_global_best_median": float(np.median(rel[:, g])),
        "loss_of_global_best_max": float(np.max(rel[:, g])),
        "own_best_counts": dict(Counter(names[k] for k in own).most_common()),
        "largest_best": names[int(own[largest])],
        "smallest_best": names[int(own[smallest])],
        "thesis_rel": float(geo[names.index("gemmini-64k-256k")]),
        "stock_rel": float(geo[names.index("gemmini-256k-64k")]),
        "sources": sorted(set(coster.sources().values()) - {"0"})[:3],
        "fallbacks": coster.fallbacks,
    }


def decode_profile() -> dict:
    """The largest arch's decode step (and the chat) on the thesis, stock and smallest
    configs: utilisation, KV-cache and weight bytes, time shares."""
    a = SP.largest()
    out = {}
    for regime in REGIMES:
        for scenario in SCENARIOS:
            sc = get_scenario(scenario)
            macs = sum(o.macs for ops in scenario_ops(a, SP, sc) for o in ops)
            coster = Coster(SP, regime=regime, scenario=scenario, backend="analytical")
            for hw in ("gemmini-64k-256k", "gemmini-256k-64k", "gemmini-16k-16k"):
                c = coster.cost(a, hw)
                bd = c.breakdown
                att = sum(
                    bd.get(k, (0, 0))[0]
                    for k in ("attn_score", "attn_context", "kv_score", "kv_context", "softmax")
                )
                out[f"{scenario}|{regime}|{hw}"] = {
                    "utilization": macs / (c.latency_cycles * 256),
                    "latency_us": c.latency_s * 1e6,
                    "energy_uJ": c.energy_J * 1e6,
                    "edp": c.edp,
                    "attention_time_share": att / c.latency_cycles,
                    "lm_head_time_share": bd["lm_head"][0] / c.latency_cycles,
                    "kv_write_time_share": bd.get("kv_write", (0, 0))[0] / c.latency_cycles,
                }
    ph = get_scenario("decode").phases(SP.seq_len)[0]
    out["largest_decode_bytes"] = kv_cache_bytes(a, SP, ph)
    return out


def fronts() -> tuple[list[dict], dict]:
    rows, best = [], {}
    for s in SCENARIOS:
        for r in REGIMES:
            f = HERE / "results" / f"{s}-{r}" / "pareto.json"
            if not f.is_file():
                continue
            p = json.loads(f.read_text())
            front = sorted(p["front"], key=lambda e: e["edp"])
            for e in front:
                rows.append(
                    {
                        "scenario": s,
                        "regime": r,
                        "arch": e["arch_id"],
                        "hw": e["hw"],
                        "ppl_search": round(e["ppl"], 2),
                        "latency_us": round(e["latency_s"] * 1e6, 3),
                        "energy_uJ": round(e["energy_J"] * 1e6, 4),
                        "edp_Js": f"{e['edp']:.4g}",
                    }
                )
            hws = Counter(e["hw"] for e in front)
            acc_gt = sum(
                int(h.split("-")[2][:-1]) > int(h.split("-")[1][:-1])
                for h in (e["hw"] for e in front)
            )
            best[f"{s}|{r}"] = {
                "unit": p.get("objective_unit", ""),
                "front_size": len(front),
                "lowest_edp_member": {"arch": front[0]["arch_id"], "hw": front[0]["hw"]},
                "lowest_ppl_member": {
                    "arch": min(front, key=lambda e: e["ppl"])["arch_id"],
                    "hw": min(front, key=lambda e: e["ppl"])["hw"],
                },
                "front_configs": dict(hws.most_common()),
                "share_acc_gt_sp": acc_gt / len(front),
                "pairs_costed": p["time"]["hw_archs_costed"],
                "search_s": round(p["time"]["total_s"], 1),
            }
    return rows, best


def plot_heat(tables: dict, path: Path) -> None:
    sps, accs = DEFAULT_HW_SPACE.sp_kib, DEFAULT_HW_SPACE.acc_kib
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for i, r in enumerate(REGIMES):
        for j, s in enumerate(SCENARIOS):
            t = tables[f"{s}|{r}"]
            grid = np.full((len(sps), len(accs)), np.nan)
            for name, v in zip(t["configs"], t["geo_rel_edp"], strict=True):
                _, a, b = name.split("-")
                grid[sps.index(int(a[:-1])), accs.index(int(b[:-1]))] = (
                    v if np.isfinite(v) else np.nan
                )
            ax = axes[i, j]
            im = ax.imshow(np.log2(grid), cmap="viridis_r", origin="lower")
            for y in range(len(sps)):
                for x in range(len(accs)):
                    if np.isfinite(grid[y, x]):
                        ax.text(
                            x,
                            y,
                            f"{grid[y, x]:.2f}",
                            ha="center",
                            va="center",
                            fontsize=7,
                            color="w" if grid[y, x] > 1.3 else "k",
                        )
            ax.set_xticks(range(len(accs)), accs)
            ax.set_yticks(range(len(sps)), sps)
            ax.set_xlabel("accumulator KiB")
            ax.set_ylabel("scratchpad KiB")
            ax.set_title(f"{s}, {r}\nbest {t['global_best']}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.7, label="log2 geo-mean EDP / own best")
    fig.suptitle("cpu archs: EDP relative to each arch's best config (model estimate)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fronts(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for j, s in enumerate(SCENARIOS):
        ax = axes[j]
        for r, m in zip(REGIMES, ("o", "s"), strict=True):
            pts = sorted(
                (float(x["edp_Js"]), x["ppl_search"])
                for x in rows
                if x["scenario"] == s and x["regime"] == r
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker=m, ls="-", label=r)
        ax.set_xscale("log")
        ax.set_xlabel(
            {
                "prefill": "EDP per prefill (J s)",
                "decode": "EDP per decode step (J s)",
                "chat": "EDP per chat request (J s)",
            }[s]
        )
        ax.set_ylabel("search perplexity (supernet)")
        ax.set_title(s)
        ax.legend(fontsize=8)
    fig.suptitle("joint arch + buffer-split search fronts (costs: model estimates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--archs", type=int, default=2000)
    a = p.parse_args()
    rng = random.Random(0)
    archs = list(
        dict.fromkeys([SP.largest(), SP.smallest()] + [SP.sample(rng) for _ in range(a.archs)])
    )
    tables = {f"{s}|{r}": split_table(archs, s, r) for s in SCENARIOS for r in REGIMES}
    split_rows = [
        {
            "scenario": k.split("|")[0],
            "regime": k.split("|")[1],
            "hw": n,
            "geo_rel_edp": round(g, 4) if np.isfinite(g) else "cannot run every arch",
            "share_archs_best": round(sh, 4),
        }
        for k, t in tables.items()
        for n, g, sh in zip(t["configs"], t["geo_rel_edp"], t["share_best"], strict=True)
    ]
    write_csv_atomic(OUT / "buffer_split.csv", list(split_rows[0]), split_rows)
    prof = decode_profile()
    frows, best = fronts()
    if frows:
        write_csv_atomic(OUT / "fronts.csv", list(frows[0]), frows)
        plot_fronts(frows, OUT / "fronts.png")
    plot_heat(tables, OUT / "heatmap.png")
    result = {
        "what": "serving scenarios on the cpu space: best buffer split per scenario and "
        "regime (cost model over sampled archs) and the searches' fronts",
        "n_archs": len(archs),
        "scenarios": {s: get_scenario(s).to_dict(SP.seq_len) for s in SCENARIOS},
        "per_arch": tables,
        "largest_arch_profile": prof,
        "fronts": best,
        "git_commit": git_commit(),
        "note": "costs are model estimates (analytical Gemmini model; no Timeloop or RTL run "
        "here); search perplexities are measured on the committed supernet",
    }
    write_json_atomic(OUT / "per_arch.json", result)
    lines = [
        "| scenario | regime | best config (geo-mean) | archs whose own best it is | "
        "median / max loss | largest arch's best | smallest's best | thesis 64k-256k | "
        "stock 256k-64k |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, t in tables.items():
        s, r = k.split("|")
        lines.append(
            f"| {s} | {r} | {t['global_best']} | {t['share_archs_best_is_global']:.1%} | "
            f"{t['loss_of_global_best_median']:.3f} / {t['loss_of_global_best_max']:.3f} | "
            f"{t['largest_best']} | {t['smallest_best']} | {t['thesis_rel']:.3f}x | "
            f"{t['stock_rel']:.3f}x |"
        )
    if best:
        lines += [
            "",
            "| scenario | regime | front | lowest-EDP member | lowest-ppl member | "
            "configs on the front | acc > sp |",
            "|---|---|---|---|---|---|---|",
        ]
        for k, b in best.items():
            s, r = k.split("|")
            cf = ", ".join(f"{h} x{n}" for h, n in b["front_configs"].items())
            lines.append(
                f"| {s} | {r} | {b['front_size']} | {b['lowest_edp_member']['arch']} on "
                f"{b['lowest_edp_member']['hw']} | {b['lowest_ppl_member']['arch']} on "
                f"{b['lowest_ppl_member']['hw']} | {cf} | {b['share_acc_gt_sp']:.0%} |"
            )
    lines += [
        "",
        "| scenario | regime | hw | largest arch: utilisation | latency us | "
        "energy uJ | attention time | LM head time | KV write time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k, v in prof.items():
        if "|" not in k:
            continue
        s, r, h = k.split("|")
        lines.append(
            f"| {s} | {r} | {h} | {v['utilization']:.2%} | {v['latency_us']:.1f} | "
            f"{v['energy_uJ']:.2f} | {v['attention_time_share']:.1%} | "
            f"{v['lm_head_time_share']:.1%} | {v['kv_write_time_share']:.2%} |"
        )
    b = prof["largest_decode_bytes"]
    lines += [
        "",
        f"Largest arch, one decode step at context 128, batch 1: KV-cache reads "
        f"{b['kv_read']:,} B, writes {b['kv_write']:,} B, backbone weights {b['weights']:,} B.",
    ]
    write_text_atomic(OUT / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
