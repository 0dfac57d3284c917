"""Does the best hardware depend on the architecture? The cost model alone, many archs.

    python experiments/hw_cosearch/per_arch.py [--archs 10000]

For each setting (preset, sequence length, mapping regime, hardware space) every sampled
arch (seed 0, plus the largest and smallest) is costed on every config of the hardware
space (end-to-end EDP of one prefill, the search's objective; configs on which the arch
cannot run, cost_model.norm_capacity, are skipped), and its own best config is compared
with the global best: the config with the lowest geometric mean, over the archs, of EDP
relative to each arch's best (among configs that can run every arch). No perplexity is
needed: which config is best for a given arch does not depend on it. Also recomputes the
heat map of `analyse.py` with the current cost model on the arch pools (and search
perplexities) of the committed joint searches (`results/<regime>/evaluated.csv`, made with
the previous model). Writes `results/per_arch.json`, `results/per_arch.md` and
`results/heatmap_current_model.png` next to this file.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
from analyse import HEAT_BUDGETS, heat, plot_heat

from cosearch.evo.pareto import read_search_ppl
from cosearch.hw.cost_model import norm_capacity
from cosearch.hw.gemmini import DEFAULT_HW_SPACE, HwSearchSpace, get_hw
from cosearch.hw.lut import Coster
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic
from cosearch.space import PRESETS

OUT = Path(__file__).parent / "results"
THESIS = "gemmini-64k-256k"
# Under an area budget instead of the SRAM one: buffers up to 512 KiB each and 8x8 to
# 32x32 arrays, within the thesis config's area (SRAMs + PE array, GemminiConfig.area_mm2)
AREA_SPACE = HwSearchSpace(pe=(8, 16, 32), budget_kib=1024, budget_mm2=get_hw(THESIS).area_mm2())
SETTINGS = [
    # (preset, L, hardware space label)
    ("cpu", 128, "sram-320"),
    ("cpu", 512, "sram-320"),
    ("cpu", 1024, "sram-320"),
    ("paper", 128, "sram-320"),
    ("paper", 512, "sram-320"),
    ("cpu", 128, "area-thesis"),
]
SPACES = {"sram-320": DEFAULT_HW_SPACE, "area-thesis": AREA_SPACE}


def setting(preset: str, L: int, regime: str, hw_label: str, n_archs: int) -> dict:
    sp = PRESETS[preset]
    rng = random.Random(0)
    archs = list(
        dict.fromkeys([sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(n_archs)])
    )
    cfgs = SPACES[hw_label].configs()
    coster = Coster(sp, seq_len=L, regime=regime, backend="analytical")
    edp = np.full((len(archs), len(cfgs)), np.inf)
    d = np.array([a.d_model for a in archs])
    for j, hw in enumerate(cfgs):
        ok = norm_capacity(L, d, hw)[0] == 0
        if ok.any():
            idx = np.flatnonzero(ok)
            costs = coster.cost_many([archs[i] for i in idx], hw)
            edp[idx, j] = [c.edp for c in costs]
    runnable = np.isfinite(edp)
    can_run_all = runnable.all(0)
    best = edp.min(1, keepdims=True)
    rel = edp / best
    with np.errstate(divide="ignore"):
        geo = np.exp(np.log(rel).mean(0))
    geo[~can_run_all] = np.inf
    g = int(np.argmin(geo))
    own = edp.argmin(1)
    differs = own != g
    loss = rel[:, g]
    names = [c.name for c in cfgs]
    counts = Counter(names[i] for i in own)
    where = {}
    if differs.any():  # which archs want another config
        for key, vals in (
            ("n_layers", np.array([a.n_layers for a in archs])),
            ("d_model", d),
            ("mean_heads", np.array([np.mean(a.heads) for a in archs])),
            ("mean_d_ffn", np.array([np.mean(a.d_ffn) for a in archs])),
        ):
            where[key] = {
                "differs_mean": float(vals[differs].mean()),
                "same_mean": float(vals[~differs].mean()) if (~differs).any() else None,
            }
    return {
        "preset": preset,
        "L": L,
        "regime": regime,
        "hw_space": hw_label,
        "archs": len(archs),
        "configs": len(cfgs),
        "configs_that_run_every_arch": int(can_run_all.sum()),
        "archs_with_no_runnable_config": int((~runnable.any(1)).sum()),
        "global_best": names[g],
        "global_best_geo_mean_loss": float(geo[g]),
        "archs_whose_best_differs": int(differs.sum()),
        "share_differs": float(differs.mean()),
        "loss_of_global_best": {
            "median": float(np.median(loss)),
            "p90": float(np.quantile(loss, 0.9)),
            "max": float(loss.max()),
            "share_over_1pct": float((loss > 1.01).mean()),
        },
        "best_config_counts": dict(counts.most_common()),
        "thesis_config_loss_median": (
            float(np.median(rel[:, names.index(THESIS)])) if THESIS in names else None
        ),
        "differing_archs_vs_others": where,
        "largest_best": names[own[0]],
        "smallest_best": names[own[1]],
    }


def markdown(rows: list[dict]) -> str:
    out = [
        "| preset | L | regime | hw space | global best | archs whose best differs | "
        "loss of the global best (median / p90 / max) | best configs (archs) | "
        "largest / smallest |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo = r["loss_of_global_best"]
        top = ", ".join(f"{k}: {v}" for k, v in list(r["best_config_counts"].items())[:4])
        out.append(
            f"| {r['preset']} | {r['L']} | {r['regime']} | {r['hw_space']} | {r['global_best']} | "
            f"{r['archs_whose_best_differs']} of {r['archs']} ({100 * r['share_differs']:.1f} %) | "
            f"{lo['median']:.3f} / {lo['p90']:.3f} / {lo['max']:.3f} | {top} | "
            f"{r['largest_best']} / {r['smallest_best']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=10_000, help="random archs per setting")
    a = p.parse_args()
    t0 = time.perf_counter()
    rows = [
        setting(preset, L, regime, hw, a.archs)
        for preset, L, hw in SETTINGS
        for regime in ("optimal", "gemmini-tiler")
    ]
    maps = {}
    for regime in ("optimal", "gemmini-tiler"):
        pool = read_search_ppl(OUT / regime / "evaluated.csv")
        for budget in HEAT_BUDGETS:
            m = heat(pool, "cpu", regime, budget)
            maps[f"{regime} regime, search ppl within +{budget:.0%} of the largest"] = m
    plot_heat(
        {k: v for k, v in maps.items() if f"+{HEAT_BUDGETS[0]:.0%}" in k},
        OUT / "heatmap_current_model.png",
    )
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": f"python experiments/hw_cosearch/per_arch.py --archs {a.archs}",
        "git_commit": git_commit(),
        "seconds": round(time.perf_counter() - t0, 1),
        "area_budget_mm2": AREA_SPACE.budget_mm2,
    }
    write_json_atomic(OUT / "per_arch.json", {"meta": meta, "settings": rows, "heatmaps": maps})
    write_text_atomic(OUT / "per_arch.md", markdown(rows))
    print(markdown(rows))
    for key, m in maps.items():
        can = {h: c for h, c in m["cells"].items() if c["arch"] is not None}
        best = min(can.items(), key=lambda kv: kv[1]["edp"])
        print(
            f"{key}: best {best[0]} {best[1]['rel']:.3f}; {THESIS} "
            f"{m['cells'][THESIS]['rel']:.3f}; gemmini-256k-64k "
            f"{m['cells']['gemmini-256k-64k']['rel']:.3f}"
        )


if __name__ == "__main__":
    main()
