"""Validate the analytical Gemmini model against real Timeloop (optimal regime) and FireSim
RTL runs (gemmini-tiler regime), measure what each model change moved, and ask which
buffer split wins for Transformer layers in each mapping regime.

Reproduce (from the repository root, under a minute on one core):
    python experiments/cost_model_validation/run.py
Writes results/ next to this file: metrics.json, per_gemm.csv, buffer_split.csv,
arch_edp.csv, dram_ffn.csv, model_changes.csv, feasibility.csv, area.csv, scatter_cycles.png,
scatter_energy.png, buffer_split.png; and, when DOSA's FireSim tables are in ../shared/firesim
(never committed), firesim.json and firesim_per_gemm.csv (kept from the last run otherwise).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosearch.errors import InputFileError  # noqa: E402
from cosearch.hw import calibrate, firesim  # noqa: E402
from cosearch.hw.cost_model import (  # noqa: E402
    PREVIOUS_TILER,
    SHIPPED_TILER,
    Calibration,
    default_calibration,
    gemm_cost,
    norm_capacity,
)
from cosearch.hw.gemmini import DEFAULT_HW_SPACE, get_hw  # noqa: E402
from cosearch.hw.lut import Coster  # noqa: E402
from cosearch.hw.workload import OutputLayer  # noqa: E402
from cosearch.space import PRESETS  # noqa: E402

OUT = Path(__file__).parent / "results"
THESIS, STOCK = "gemmini-64k-256k", "gemmini-256k-64k"


def validation(rows) -> dict:
    train, test = calibrate.split(rows)
    cal = calibrate.fit(rows, train)
    xtrain, xtest = calibrate.cross_config_split(rows)
    xcal = calibrate.fit(rows, xtrain)
    out = {
        "calibration": {"energy_scale": cal.energy_scale, "cycles_scale": cal.cycles_scale},
        "shipped_calibration": default_calibration().energy_scale,
        "train": calibrate.evaluate(rows, cal, train),
        "test": calibrate.evaluate(rows, cal, test),
        "all": calibrate.evaluate(rows, cal),
        "uncalibrated_all": calibrate.evaluate(rows, Calibration()),
        "cross_config": {
            "energy_scale": xcal.energy_scale,
            "test": calibrate.evaluate(rows, xcal, xtest),
        },
    }
    # per-GEMM table + scatter plots
    pred = calibrate.predict(rows, cal)
    raw = calibrate.predict(rows, Calibration())
    t_ref = np.array([r.mapper_seconds for r in rows])
    t0 = time.perf_counter()
    reps = 200
    for _ in range(reps):
        calibrate.predict(rows, cal)
    t_model = (time.perf_counter() - t0) / reps / len(rows)
    out["timeloop_mapper_seconds_per_gemm"] = {
        "mean": float(np.mean(t_ref)),
        "min": float(np.min(t_ref)),
        "max": float(np.max(t_ref)),
    }
    out["analytical_seconds_per_gemm_small_batch"] = t_model
    with (OUT / "per_gemm.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "hw",
                "M",
                "K",
                "N",
                "split",
                "tl_cycles",
                "model_cycles",
                "tl_energy_pJ",
                "model_energy_pJ",
                "model_energy_uncal_pJ",
                "energy_ratio_uncal",
                "tl_mapper_s",
            ]
        )
        for i, r in enumerate(rows):
            sp = "train" if train[i] else "test"
            w.writerow(
                [
                    r.hw,
                    r.M,
                    r.K,
                    r.N,
                    sp,
                    r.cycles,
                    round(pred["cycles"][i]),
                    r.energy_pJ,
                    round(pred["energy_pJ"][i], 1),
                    round(raw["energy_pJ"][i], 1),
                    round(raw["energy_pJ"][i] / r.energy_pJ, 4),
                    r.mapper_seconds,
                ]
            )
    for key, label in (("cycles", "cycles"), ("energy_pJ", "energy (pJ)")):
        fig, ax = plt.subplots(figsize=(5, 5))
        ref = np.array([getattr(r, key) for r in rows])
        for m, name, mk in ((train, "fit split", "o"), (test, "held-out", "s")):
            for hw, col in ((STOCK, "tab:blue"), (THESIS, "tab:red")):
                sel = m & np.array([r.hw == hw for r in rows])
                ax.scatter(
                    ref[sel], pred[key][sel], marker=mk, c=col, label=f"{hw} {name}", alpha=0.8
                )
        lo, hi = ref.min() / 1.5, ref.max() * 1.5
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=f"Timeloop {label}",
            ylabel=f"analytical {label}",
            title=f"{label}: analytical (optimal regime) vs Timeloop",
        )
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / f"scatter_{key.split('_')[0]}.png", dpi=120)
        plt.close(fig)
    return out


# ---- gemmini-tiler regime vs FireSim RTL ----------------------------------------------
# The model changes, applied one after the other (each row adds one to the row above)
TILER_STEPS = (
    ("previous model", PREVIOUS_TILER),
    ("+ tile growth J, I, K (gemmini.h)", replace(PREVIOUS_TILER, growth="JIK")),
    ("+ a_reuse/b_reuse", replace(PREVIOUS_TILER, growth="JIK", operand_reuse=True)),
    (
        "+ weight preload per block column",
        replace(PREVIOUS_TILER, growth="JIK", operand_reuse=True, preload=True),
    ),
    ("+ DRAM and cache, fitted on training runs (shipped)", SHIPPED_TILER),
)
GEMM_CLASS = {
    (128, 768, 768): "BERT-sized",
    (128, 768, 3072): "BERT-sized",
    (128, 3072, 768): "BERT-sized",
    (128, 64, 128): "small",
    (128, 128, 64): "small",
    (1, 2048, 1000): "GEMV",
}


def firesim_comparison() -> dict | None:
    """Cycles of the stock tiler vs FireSim, per GEMM and per model change; the fit."""
    try:
        train, test = firesim.training_runs(), firesim.auto_tiled_runs()
    except InputFileError as e:
        print(f"skipping the FireSim comparison: {e}")
        return None
    refit = firesim.fit(train)
    y = np.array([r.cycles for r in test])
    preds = {name: firesim.predict(test, m, auto=True) for name, m in TILER_STEPS}
    rows, seen = [], {}
    for i, r in enumerate(test):
        seen[(r.M, r.K, r.N)] = seen.get((r.M, r.K, r.N), 0) + 1
        row = {
            "M": r.M,
            "K": r.K,
            "N": r.N,
            "class": GEMM_CLASS.get((r.M, r.K, r.N), "other"),
            "run": seen[(r.M, r.K, r.N)],
            "tiles_IJK": "x".join(map(str, r.tiles)),
            "firesim_cycles": r.cycles,
        }
        for j, (name, _) in enumerate(TILER_STEPS):
            row[f"step{j}_cycles"] = round(float(preds[name][i]))
        row["shipped_ratio"] = round(float(preds[TILER_STEPS[-1][0]][i]) / r.cycles, 4)
        rows.append(row)
    write_csv(OUT / "firesim_per_gemm.csv", rows)
    steps = []
    for j, (name, _) in enumerate(TILER_STEPS):
        err = np.abs(preds[name] - y) / y
        by = {}
        for cls in ("BERT-sized", "small", "GEMV"):
            sel = np.array([GEMM_CLASS.get((r.M, r.K, r.N)) == cls for r in test])
            ratio = preds[name][sel] / y[sel]
            by[cls] = {
                "mape_pct": 100 * float(err[sel].mean()),
                "ratio_min": float(ratio.min()),
                "ratio_max": float(ratio.max()),
            }
        steps.append({"step": j, "change": name, "mape_pct": 100 * float(err.mean()), **by})
    ytr = np.array([r.cycles for r in train])
    ptr = firesim.predict(train, SHIPPED_TILER)
    return {
        "test": {"n": len(test), "gemms": len(seen), "hw": firesim.STOCK_HW},
        "steps": steps,
        "fit": {
            "n_training_runs": len(train),
            "training_mape_pct": 100 * firesim.mape(ptr, train),
            "training_mean_abs_log_error": float(np.mean(np.abs(np.log(ptr / ytr)))),
            "refit": {k: getattr(refit, k) for k in firesim.FIT_FIELDS},
            "shipped": {k: getattr(SHIPPED_TILER, k) for k in firesim.FIT_FIELDS},
            "cache_kib": SHIPPED_TILER.cache_kib,
        },
        "replicate_spread_pct": {
            f"{M}x{K}x{N}": 100 * float(np.ptp(v) / np.mean(v))
            for (M, K, N) in seen
            for v in [y[[(r.M, r.K, r.N) == (M, K, N) for r in test]]]
        },
    }


# ---- what the workload changes moved (cpu and paper presets) ---------------------------
def model_changes() -> list[dict]:
    """Per preset, arch, regime and thesis/stock config: the output layer the model
    computes vs a dense vocab head, the causal mask and its triangular option, and the
    share of LayerNorm and residual passes, all from the analytical model (backend
    'analytical': the default 'auto' would take the thesis configs' real-Timeloop rows for
    the cpu shapes they cover and the model for the rest)."""
    out = []
    for preset, L in (("cpu", 128), ("paper", 512)):
        sp = PRESETS[preset]
        for regime in ("optimal", "gemmini-tiler"):
            base = Coster(sp, seq_len=L, regime=regime, backend="analytical")
            dense = Coster(
                sp, seq_len=L, regime=regime, backend="analytical", output=OutputLayer(sp.vocab)
            )
            tri = Coster(sp, seq_len=L, regime=regime, backend="analytical", causal="triangular")
            for which, a in (("largest", sp.largest()), ("smallest", sp.smallest())):
                for hw in (THESIS, STOCK):
                    k, d, t = base.cost(a, hw), dense.cost(a, hw), tri.cost(a, hw)
                    bd = k.breakdown
                    out.append(
                        {
                            "preset": preset,
                            "L": L,
                            "regime": regime,
                            "arch": which,
                            "hw": hw,
                            "edp_J_s": k.edp,
                            "output_layer": "adaptive" if base.output.adaptive else "full",
                            "lm_head_energy_share": bd["lm_head"][1] / k.energy_pJ,
                            "dense_head_energy_share": d.breakdown["lm_head"][1] / d.energy_pJ,
                            "edp_dense_head_over_model": d.edp / k.edp,
                            "mask_energy_share": bd["mask"][1] / k.energy_pJ,
                            "norm_passes_energy_share": (bd["layernorm"][1] + bd["residual"][1])
                            / k.energy_pJ,
                            "norm_passes_latency_share": (bd["layernorm"][0] + bd["residual"][0])
                            / k.latency_cycles,
                            "edp_triangular_over_mask": t.edp / k.edp,
                        }
                    )
    return out


def feasibility() -> list[dict]:
    """Grid configs on which the largest / smallest arch cannot run (norm_capacity)."""
    out = []
    cfgs = DEFAULT_HW_SPACE.configs()
    for preset, Ls in (("cpu", (128, 512, 1024)), ("paper", (128, 512))):
        sp = PRESETS[preset]
        for L in Ls:
            for which, a in (("largest", sp.largest()), ("smallest", sp.smallest())):
                bad = [h.name for h in cfgs if norm_capacity(L, a.d_model, h)[0] > 0]
                out.append(
                    {
                        "preset": preset,
                        "L": L,
                        "arch": which,
                        "d_model": a.d_model,
                        "configs_that_cannot_run": len(bad),
                        "of": len(cfgs),
                        "which": " ".join(bad),
                    }
                )
    return out


def area() -> list[dict]:
    return [
        {
            "hw": h.name,
            "sp_kib": h.sp_kib,
            "acc_kib": h.acc_kib,
            "pe": f"{h.pe_rows}x{h.pe_cols}",
            "sram_mm2": round(h.sram_area_mm2(), 4),
            "pe_array_mm2": round(h.area_mm2() - h.sram_area_mm2(), 4),
            "area_mm2": round(h.area_mm2(), 4),
        }
        for h in [*DEFAULT_HW_SPACE.configs(), get_hw("gemmini-256k-64k-pe32x32")]
    ]


def speed() -> dict:
    rng = np.random.default_rng(0)
    G = 100_000
    M = rng.choice([128, 256, 512], G)
    K = rng.integers(1, 200, G) * 16
    N = rng.integers(1, 200, G) * 16
    gemm_cost(M[:100], K[:100], N[:100], THESIS)
    res = {}
    for regime in ("optimal", "gemmini-tiler"):
        t = time.perf_counter()
        gemm_cost(M, K, N, THESIS, regime=regime)
        res[f"gemm_costs_per_s_{regime}"] = G / (time.perf_counter() - t)
    res["distinct_gemms_in_speed_test"] = int(len(np.unique(np.stack([M, K, N]), axis=1).T))
    sp = PRESETS["paper"]
    import random

    r = random.Random(0)
    archs = [sp.sample(r) for _ in range(20_000)]
    c = Coster(sp)
    c.cost_many(archs[:10], THESIS)
    t = time.perf_counter()
    c.cost_many(archs, THESIS)
    res["arch_evals_per_s_lut"] = len(archs) / (time.perf_counter() - t)
    return res


def arch_edp() -> list[dict]:
    sp = PRESETS["paper"]
    out = []
    for L in (128, 512):
        for regime in ("optimal", "gemmini-tiler"):
            c = Coster(sp, seq_len=L, regime=regime, backend="analytical")
            for which, a in (("largest", sp.largest()), ("smallest", sp.smallest())):
                for hw in (THESIS, STOCK):
                    k = c.cost(a, hw)
                    out.append(
                        {
                            "L": L,
                            "regime": regime,
                            "arch": which,
                            "hw": hw,
                            "latency_ms": k.latency_s * 1e3,
                            "energy_mJ": k.energy_J * 1e3,
                            "edp_J_s": k.edp,
                            "backbone_latency_ms": k.backbone_latency_cycles * 1e-6,
                            "backbone_energy_mJ": k.backbone_energy_pJ * 1e-9,
                            "backbone_edp_J_s": k.backbone_edp,
                            "lm_head_energy_share": k.breakdown["lm_head"][1] / k.energy_pJ,
                            "fallbacks": c.fallbacks,
                        }
                    )
    return out


def buffer_split() -> list[dict]:
    """Transformer layers (backbone of the largest and of the median paper arch) on every
    config of the hardware grid, both regimes, L = 128 and 512."""
    sp = PRESETS["paper"]
    from cosearch.space import Arch

    mid = Arch(4, 576, (8,) * 4, (1920,) * 4)
    out = []
    for L in (128, 512):
        for regime in ("optimal", "gemmini-tiler"):
            c = Coster(sp, seq_len=L, regime=regime, backend="analytical")
            for which, a in (("largest", sp.largest()), ("median", mid)):
                for cfg in DEFAULT_HW_SPACE.configs():
                    k = c.cost(a, cfg)
                    gem = [
                        v
                        for kk, v in k.breakdown.items()
                        if kk in ("qkv", "out_proj", "ffn1", "ffn2", "attn_score", "attn_context")
                    ]
                    out.append(
                        {
                            "L": L,
                            "regime": regime,
                            "arch": which,
                            "hw": cfg.name,
                            "sp_kib": cfg.sp_kib,
                            "acc_kib": cfg.acc_kib,
                            # transformer.c's softmax and LayerNorm rows fit (section 4)
                            "can_run": k.violation == 0,
                            "backbone_cycles": k.backbone_latency_cycles,
                            "backbone_energy_pJ": k.backbone_energy_pJ,
                            "backbone_edp": k.backbone_edp,
                            "gemm_cycles": sum(g[0] for g in gem),
                            "gemm_energy_pJ": sum(g[1] for g in gem),
                        }
                    )
    return out


def dram_story() -> list[dict]:
    """DRAM bytes of the largest arch's FFN GEMM (L, 768, 3072) per regime and config."""
    out = []
    for L in (128, 512):
        for regime in ("optimal", "gemmini-tiler"):
            for hw in (THESIS, STOCK, "gemmini-128k-128k", "gemmini-32k-256k", "gemmini-64k-64k"):
                g = gemm_cost(L, 768, 3072, hw, regime=regime)
                out.append(
                    {
                        "L": L,
                        "regime": regime,
                        "hw": hw,
                        "dram_MB": float(g["dram_bytes"][0]) / 1e6,
                        "cycles": float(g["cycles"][0]),
                        "energy_uJ": float(g["energy_pJ"][0]) / 1e6,
                        "utilization": float(g["utilization"][0]),
                    }
                )
    return out


def plot_split(rows: list[dict]) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (L, regime) in zip(
        axes.flat, [(L, r) for L in (128, 512) for r in ("optimal", "gemmini-tiler")], strict=True
    ):
        sel = [r for r in rows if r["L"] == L and r["regime"] == regime and r["arch"] == "largest"]
        x = np.array([r["backbone_cycles"] for r in sel])
        y = np.array([r["backbone_energy_pJ"] for r in sel]) * 1e-9
        ax.scatter(x, y, c=np.log2([r["acc_kib"] for r in sel]), cmap="viridis")
        for r, xi, yi in zip(sel, x, y, strict=True):
            lab = f"{r['sp_kib']}/{r['acc_kib']}"
            bold = r["hw"] in (THESIS, STOCK)
            ax.annotate(
                lab, (xi, yi), fontsize=7 if not bold else 9, weight="bold" if bold else "normal"
            )
        ax.set(
            xlabel="backbone cycles",
            ylabel="backbone energy (mJ)",
            title=f"largest paper arch, L={L}, {regime}\n(label sp/acc KiB, colour log2 acc)",
        )
    fig.tight_layout()
    fig.savefig(OUT / "buffer_split.png", dpi=120)
    plt.close(fig)


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = calibrate.load_reference()
    metrics = {"validation": validation(rows), "speed": speed()}
    fs = firesim_comparison()
    if fs is not None:
        (OUT / "firesim.json").write_text(json.dumps(fs, indent=2) + "\n")
    write_csv(OUT / "model_changes.csv", model_changes())
    write_csv(OUT / "feasibility.csv", feasibility())
    write_csv(OUT / "area.csv", area())
    a = arch_edp()
    write_csv(OUT / "arch_edp.csv", a)
    b = buffer_split()
    write_csv(OUT / "buffer_split.csv", b)
    plot_split(b)
    d = dram_story()
    write_csv(OUT / "dram_ffn.csv", d)
    winners = {}
    for L in (128, 512):
        for regime in ("optimal", "gemmini-tiler"):
            for which in ("largest", "median"):
                sel = [
                    r
                    for r in b
                    if r["L"] == L and r["regime"] == regime and r["arch"] == which and r["can_run"]
                ]
                key = f"L{L}/{regime}/{which}"
                best = {"configs_that_can_run": len(sel)}
                for m in ("backbone_cycles", "backbone_energy_pJ", "backbone_edp"):
                    lo = min(r[m] for r in sel)  # every config within 0.5 % of the best
                    best[m] = [
                        r["hw"] for r in sorted(sel, key=lambda r, m=m: r[m]) if r[m] <= lo * 1.005
                    ]
                by_edp = sorted(sel, key=lambda r: r["backbone_edp"])
                best["edp_order"] = [r["hw"] for r in by_edp]
                th = next(r for r in sel if r["hw"] == THESIS)
                st = next(r for r in sel if r["hw"] == STOCK)
                best["thesis_over_stock"] = {
                    m: th[m] / st[m]
                    for m in ("backbone_cycles", "backbone_energy_pJ", "backbone_edp")
                }
                for name, r in (("thesis", th), ("stock", st)):
                    best[f"{name}_edp_rank"] = by_edp.index(r) + 1
                    best[f"{name}_edp_over_best"] = r["backbone_edp"] / by_edp[0]["backbone_edp"]
                winners[key] = best
    # among the configs that can run the arch (can_run), as the search's constraint does
    metrics["buffer_split_winners"] = winners
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    hw = get_hw(THESIS)
    print(f"done: {OUT} ({hw.name} = thesis config)")


if __name__ == "__main__":
    main()
