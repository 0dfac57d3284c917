"""GEMVs (M = 1, a decode step's shape) on Gemmini RTL vs the gemmini-tiler regime.

    python experiments/serving/gemv_firesim.py

Every plain-GEMM row of DOSA's FireSim tables (../shared/firesim, never committed) with
M < 16: the test file's stock tiler (`tiled_matmul_auto` on gemmini-256k-64k: the
1 x 2048 x 1000 GEMV, 3 runs) and the training file's runs on a 16x16 array with DOSA's
explicit tiles. Each is costed by the shipped tiler model (`SHIPPED_TILER`, in the
benchmark's 'harness' context, as cosearch.hw.firesim does) with the run's tiles (and, for
the stock rows, with the tiles the model's own tiled_matmul_auto picks). Writes
results/gemv_firesim.csv (per run: measured and modelled cycles, ratio) and
results/gemv_firesim.json (errors per group). The measured numbers are RTL cycles; the
modelled ones are model estimates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cosearch.hw import firesim
from cosearch.hw.cost_model import SHIPPED_TILER
from cosearch.runinfo import git_commit, write_csv_atomic, write_json_atomic

OUT = Path(__file__).parent / "results"


def errors(pred: np.ndarray, runs: list[firesim.Run]) -> dict:
    y = np.array([r.cycles for r in runs])
    ratio = pred / y
    return {
        "runs": len(runs),
        "mape": float(np.mean(np.abs(ratio - 1))),
        "mean_abs_log_error": float(np.mean(np.abs(np.log(ratio)))),
        "median_ratio_model_over_rtl": float(np.median(ratio)),
        "min_ratio": float(ratio.min()),
        "max_ratio": float(ratio.max()),
    }


def main() -> None:
    stock = [r for r in firesim.auto_tiled_runs() if r.M < 16]
    train = [r for r in firesim.training_runs() if r.M < 16]
    big = [r for r in firesim.training_runs() if r.M >= 16]
    groups = {
        "stock tiler, model's own tiles (tiled_matmul_auto)": (
            stock,
            firesim.predict(stock, SHIPPED_TILER, auto=True),
        ),
        "stock tiler, the run's tiles": (stock, firesim.predict(stock, SHIPPED_TILER)),
        "training runs (DOSA tiles, 16x16), M = 1": (
            train,
            firesim.predict(train, SHIPPED_TILER),
        ),
        "training runs (DOSA tiles, 16x16), M >= 16 (for comparison)": (
            big,
            firesim.predict(big, SHIPPED_TILER),
        ),
    }
    rows = []
    for name, (runs, pred) in groups.items():
        if "M >= 16" in name:
            continue
        for r, p in zip(runs, pred, strict=True):
            rows.append(
                {
                    "group": name,
                    "M": r.M,
                    "K": r.K,
                    "N": r.N,
                    "tiles_IJK_blocks": "x".join(map(str, r.tiles)),
                    "rtl_cycles": r.cycles,
                    "model_cycles": round(float(p), 1),
                    "model_over_rtl": round(float(p) / r.cycles, 4),
                    "utilization_rtl": round(r.M * r.K * r.N / (r.cycles * 256), 5),
                }
            )
    write_csv_atomic(OUT / "gemv_firesim.csv", list(rows[0]), rows)
    summary = {
        "what": "GEMV (M < 16) cycles: Gemmini RTL in FireSim (DOSA's tables) vs the "
        "gemmini-tiler regime (SHIPPED_TILER, a model estimate)",
        "tiler_model": SHIPPED_TILER.source,
        "note": "the training runs are also what SHIPPED_TILER was fitted on (55 of its 68 "
        "runs are GEMVs), so their error is an in-sample error; the stock-tiler rows are "
        "held out",
        "groups": {k: errors(p, r) for k, (r, p) in groups.items()},
        "git_commit": git_commit(),
    }
    write_json_atomic(OUT / "gemv_firesim.json", summary)
    for k, v in summary["groups"].items():
        print(
            f"{k}: {v['runs']} runs, MAPE {v['mape']:.1%}, median model/RTL "
            f"{v['median_ratio_model_over_rtl']:.2f} ({v['min_ratio']:.2f}-{v['max_ratio']:.2f})"
        )


if __name__ == "__main__":
    main()
