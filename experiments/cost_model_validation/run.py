"""Validate the analytical Gemmini model against real Timeloop and ask which buffer split
wins for Transformer layers in each mapping regime.

Reproduce (from the repository root, a few seconds on one core):
    python experiments/cost_model_validation/run.py
Writes results/ next to this file: metrics.json, per_gemm.csv, buffer_split.csv,
arch_edp.csv, scatter_cycles.png, scatter_energy.png, buffer_split.png.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosearch.hw import calibrate  # noqa: E402
from cosearch.hw.cost_model import Calibration, default_calibration, gemm_cost  # noqa: E402
from cosearch.hw.gemmini import DEFAULT_HW_SPACE, get_hw  # noqa: E402
from cosearch.hw.lut import Coster  # noqa: E402
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
        "cross_config": {"energy_scale": xcal.energy_scale,
                         "test": calibrate.evaluate(rows, xcal, xtest)},
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
    out["timeloop_mapper_seconds_per_gemm"] = {"mean": float(np.mean(t_ref)),
                                               "min": float(np.min(t_ref)),
                                               "max": float(np.max(t_ref))}
    out["analytical_seconds_per_gemm_small_batch"] = t_model
    with (OUT / "per_gemm.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["hw", "M", "K", "N", "split", "tl_cycles", "model_cycles", "tl_energy_pJ",
                    "model_energy_pJ", "model_energy_uncal_pJ", "energy_ratio_uncal",
                    "tl_mapper_s"])
        for i, r in enumerate(rows):
            sp = "train" if train[i] else "test"
            w.writerow([r.hw, r.M, r.K, r.N, sp, r.cycles, round(pred["cycles"][i]),
                        r.energy_pJ, round(pred["energy_pJ"][i], 1),
                        round(raw["energy_pJ"][i], 1),
                        round(raw["energy_pJ"][i] / r.energy_pJ, 4), r.mapper_seconds])
    for key, label in (("cycles", "cycles"), ("energy_pJ", "energy (pJ)")):
        fig, ax = plt.subplots(figsize=(5, 5))
        ref = np.array([getattr(r, key) for r in rows])
        for m, name, mk in ((train, "fit split", "o"), (test, "held-out", "s")):
            for hw, col in ((STOCK, "tab:blue"), (THESIS, "tab:red")):
                sel = m & np.array([r.hw == hw for r in rows])
                ax.scatter(ref[sel], pred[key][sel], marker=mk, c=col, label=f"{hw} {name}",
                           alpha=0.8)
        lo, hi = ref.min() / 1.5, ref.max() * 1.5
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xscale="log", yscale="log", xlabel=f"Timeloop {label}",
               ylabel=f"analytical {label}",
               title=f"{label}: analytical (optimal regime) vs Timeloop")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(OUT / f"scatter_{key.split('_')[0]}.png", dpi=120)
        plt.close(fig)
    return out


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
            c = Coster(sp, seq_len=L, regime=regime)
            for which, a in (("largest", sp.largest()), ("smallest", sp.smallest())):
                for hw in (THESIS, STOCK):
                    k = c.cost(a, hw)
                    out.append({
                        "L": L, "regime": regime, "arch": which, "hw": hw,
                        "latency_ms": k.latency_s * 1e3, "energy_mJ": k.energy_J * 1e3,
                        "edp_J_s": k.edp,
                        "backbone_latency_ms": k.backbone_latency_cycles * 1e-6,
                        "backbone_energy_mJ": k.backbone_energy_pJ * 1e-9,
                        "backbone_edp_J_s": k.backbone_edp,
                        "lm_head_energy_share": k.breakdown["lm_head"][1] / k.energy_pJ,
                        "fallbacks": c.fallbacks,
                    })
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
            c = Coster(sp, seq_len=L, regime=regime)
            for which, a in (("largest", sp.largest()), ("median", mid)):
                for cfg in DEFAULT_HW_SPACE.configs():
                    k = c.cost(a, cfg)
                    gem = [v for kk, v in k.breakdown.items()
                           if kk in ("qkv", "out_proj", "ffn1", "ffn2", "attn_score",
                                     "attn_context")]
                    out.append({
                        "L": L, "regime": regime, "arch": which, "hw": cfg.name,
                        "sp_kib": cfg.sp_kib, "acc_kib": cfg.acc_kib,
                        "backbone_cycles": k.backbone_latency_cycles,
                        "backbone_energy_pJ": k.backbone_energy_pJ,
                        "backbone_edp": k.backbone_edp,
                        "gemm_cycles": sum(g[0] for g in gem),
                        "gemm_energy_pJ": sum(g[1] for g in gem),
                    })
    return out


def dram_story() -> list[dict]:
    """DRAM bytes of the largest arch's FFN GEMM (L, 768, 3072) per regime and config."""
    out = []
    for L in (128, 512):
        for regime in ("optimal", "gemmini-tiler"):
            for hw in (THESIS, STOCK, "gemmini-128k-128k", "gemmini-32k-256k", "gemmini-64k-64k"):
                g = gemm_cost(L, 768, 3072, hw, regime=regime)
                out.append({"L": L, "regime": regime, "hw": hw,
                            "dram_MB": float(g["dram_bytes"][0]) / 1e6,
                            "cycles": float(g["cycles"][0]),
                            "energy_uJ": float(g["energy_pJ"][0]) / 1e6,
                            "utilization": float(g["utilization"][0])})
    return out


def plot_split(rows: list[dict]) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (L, regime) in zip(axes.flat, [(L, r) for L in (128, 512)
                                           for r in ("optimal", "gemmini-tiler")], strict=True):
        sel = [r for r in rows if r["L"] == L and r["regime"] == regime and r["arch"] == "largest"]
        x = np.array([r["backbone_cycles"] for r in sel])
        y = np.array([r["backbone_energy_pJ"] for r in sel]) * 1e-9
        ax.scatter(x, y, c=np.log2([r["acc_kib"] for r in sel]), cmap="viridis")
        for r, xi, yi in zip(sel, x, y, strict=True):
            lab = f"{r['sp_kib']}/{r['acc_kib']}"
            bold = r["hw"] in (THESIS, STOCK)
            ax.annotate(lab, (xi, yi), fontsize=7 if not bold else 9,
                        weight="bold" if bold else "normal")
        ax.set(xlabel="backbone cycles", ylabel="backbone energy (mJ)",
               title=f"largest paper arch, L={L}, {regime}\n(label sp/acc KiB, colour log2 acc)")
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
                sel = [r for r in b if r["L"] == L and r["regime"] == regime
                       and r["arch"] == which]
                key = f"L{L}/{regime}/{which}"
                best = {}
                for m in ("backbone_cycles", "backbone_energy_pJ", "backbone_edp"):
                    lo = min(r[m] for r in sel)  # every config within 0.5 % of the best
                    best[m] = [r["hw"] for r in sorted(sel, key=lambda r, m=m: r[m])
                               if r[m] <= lo * 1.005]
                th = next(r for r in sel if r["hw"] == THESIS)
                st = next(r for r in sel if r["hw"] == STOCK)
                best["thesis_over_stock"] = {
                    m: th[m] / st[m] for m in ("backbone_cycles", "backbone_energy_pJ",
                                               "backbone_edp")}
                winners[key] = best
    metrics["buffer_split_winners"] = winners
    (OUT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    hw = get_hw(THESIS)
    print(f"done: {OUT} ({hw.name} = thesis config)")


if __name__ == "__main__":
    main()
