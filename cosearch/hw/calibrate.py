"""Calibration of the analytical model against real Timeloop results.

Owns reading the reference table (lut/timeloop/calibration.csv, a provenance copy of
../shared/timeloop/calibration.csv), the deterministic held-out split, the fit of the one
global energy factor, and the accuracy metrics (MAPE, Spearman, ranking agreement of
buffer configs per GEMM). It must not change the model's physics: per-access energies
and the size dependence come from `gemmini`, never from this fit. The shipped model uses
no fitted factor (`cost_model.SHIPPED_CALIBRATION`: the factor fitted here on the random
mapper's rows fits its unconverged search); the fit stays as a measurement.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosearch.hw.cost_model import Calibration, gemm_cost

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_CSV = REPO_ROOT / "lut" / "timeloop" / "calibration.csv"


@dataclass(frozen=True)
class RefRow:
    hw: str
    M: int
    K: int
    N: int
    cycles: float
    energy_pJ: float
    mapper_seconds: float
    victory: int


def load_reference(path: str | Path = REFERENCE_CSV) -> list[RefRow]:
    """Rows of a Timeloop result table (columns hw_sp_kb, hw_acc_kb, M, K, N, cycles,
    energy_pJ, mapper_seconds, victory)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"Timeloop reference table {path} not found; copy ../shared/timeloop/calibration.csv "
            "to lut/timeloop/calibration.csv (see lut/README.md)"
        )
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                RefRow(
                    hw=f"gemmini-{int(r['hw_sp_kb'])}k-{int(r['hw_acc_kb'])}k",
                    M=int(r["M"]),
                    K=int(r["K"]),
                    N=int(r["N"]),
                    cycles=float(r["cycles"]),
                    energy_pJ=float(r["energy_pJ"]),
                    mapper_seconds=float(r.get("mapper_seconds") or "nan"),
                    victory=int(r.get("victory") or 0),
                )
            )
    return rows


def split(rows: list[RefRow]) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic held-out split by GEMM shape (shapes numbered in order of first
    appearance): even-numbered shapes (both configs) fit, odd-numbered shapes test."""
    idx = _shape_index(rows)
    return idx % 2 == 0, idx % 2 == 1


def cross_config_split(rows: list[RefRow]) -> tuple[np.ndarray, np.ndarray]:
    """Harder split: fit on the stock config's even-numbered shapes only, test on the
    thesis config's odd-numbered shapes (shape and buffer config both unseen)."""
    idx = _shape_index(rows)
    hw = np.array([r.hw for r in rows])
    return (
        (idx % 2 == 0) & (hw == "gemmini-256k-64k"),
        (idx % 2 == 1) & (hw == "gemmini-64k-256k"),
    )


def _shape_index(rows: list[RefRow]) -> np.ndarray:
    shapes: dict[tuple[int, int, int], int] = {}
    for r in rows:
        shapes.setdefault((r.M, r.K, r.N), len(shapes))
    return np.array([shapes[(r.M, r.K, r.N)] for r in rows])


def predict(rows: list[RefRow], cal: Calibration, regime: str = "optimal") -> dict:
    return gemm_cost(
        [r.M for r in rows],
        [r.K for r in rows],
        [r.N for r in rows],
        [r.hw for r in rows],
        regime=regime,
        calibration=cal,
    )


def mape(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - ref) / np.abs(ref)) * 100)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties), numpy only."""

    def rank(x):
        x = np.asarray(x, dtype=float)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=float)
        for v in np.unique(x):  # average ties
            m = x == v
            r[m] = r[m].mean()
        return r

    ra, rb = rank(a), rank(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def ranking_agreement(rows: list[RefRow], pred_energy: np.ndarray) -> tuple[int, int]:
    """Per GEMM shape with >= 2 configs: does the model order the configs by energy as
    Timeloop does? Returns (agreeing shapes, shapes)."""
    by: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault((r.M, r.K, r.N), []).append(i)
    agree = total = 0
    for ii in by.values():
        if len(ii) < 2:
            continue
        total += 1
        ref = [rows[i].energy_pJ for i in ii]
        agree += int(np.array_equal(np.argsort(ref), np.argsort(pred_energy[ii])))
    return agree, total


def fit(rows: list[RefRow], train: np.ndarray) -> Calibration:
    """Fit the global memory-energy factor (min energy MAPE on the training rows) and the
    cycles factor (median ratio). The model searches mappings exactly; Timeloop's
    random-pruned mapper (victory 5000) stops at worse mappings, which this factor absorbs
    on average."""
    base = predict(rows, Calibration())
    mac = np.array([0.845 * r.M * r.K * r.N for r in rows])
    mem = base["energy_pJ"] - mac
    ref_e = np.array([r.energy_pJ for r in rows])
    ref_c = np.array([r.cycles for r in rows])
    scales = np.arange(0.8, 1.6, 0.001)
    errs = [mape(mac[train] + s * mem[train], ref_e[train]) for s in scales]
    s_best = float(np.round(scales[int(np.argmin(errs))], 3))
    c_best = float(np.round(np.median(ref_c[train] / base["cycles"][train]), 4))
    n = int(train.sum())
    return Calibration(
        energy_scale=s_best,
        cycles_scale=c_best,
        source=f"cosearch.hw.calibrate.fit on {n} rows of "
        "lut/timeloop/calibration.csv (held-out split: calibrate.split)",
    )


def evaluate(rows: list[RefRow], cal: Calibration, mask: np.ndarray | None = None) -> dict:
    """MAPE of cycles and energy, Spearman of energy, ranking agreement on `mask` rows."""
    mask = np.ones(len(rows), bool) if mask is None else mask
    sub = [r for r, m in zip(rows, mask, strict=True) if m]
    pred = predict(sub, cal)
    ref_e = np.array([r.energy_pJ for r in sub])
    ref_c = np.array([r.cycles for r in sub])
    agree, total = ranking_agreement(sub, pred["energy_pJ"])
    return {
        "n": len(sub),
        "cycles_mape_pct": mape(pred["cycles"], ref_c),
        "energy_mape_pct": mape(pred["energy_pJ"], ref_e),
        "energy_spearman": spearman(pred["energy_pJ"], ref_e) if len(sub) > 2 else float("nan"),
        "ranking_agree": agree,
        "ranking_total": total,
    }
