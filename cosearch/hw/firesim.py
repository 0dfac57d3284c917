"""FireSim (RTL) measurements of Gemmini from DOSA, and the fit of the tiler regime to them.

Owns reading DOSA's public FireSim tables (../shared/firesim, never committed: see its
README), selecting the plain GEMMs (R = S = Q = 1), turning a DOSA mapping string into the
tile sizes the run used, fitting `cost_model.TilerModel`'s memory-system constants on the
training file and scoring a model on the test file. It must not define costs itself.

The two files measure different software. The training file (1,567 layers, 331 GEMMs) ran
DOSA's own mappings through a fork of gemmini.h's `tiled_matmul` that takes explicit tile
sizes and a loop order, on 4x4 to 128x128 arrays; the test file's `target.gemmini_auto_cycle`
is stock `tiled_matmul_auto` on the stock config (16x16 array, 256 KiB scratchpad, 64 KiB
accumulator: its `dse.auto_tiling` column is exactly the tiles gemmini.h picks there). So
the fit uses the training runs that ran on a 16x16 array, with their tiles and gemmini.h's
loop order (the fork's order is not public), and the test is the stock tiler.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cosearch.errors import InputFileError
from cosearch.hw.cost_model import SHIPPED_TILER, TilerModel, gemm_cost

FIRESIM_DIR = Path(__file__).resolve().parents[3] / "shared" / "firesim"
TRAIN_CSV = "dosa_firesim_training.csv"
TEST_CSV = "dosa_firesim_test.csv"
STOCK_HW = "gemmini-256k-64k"  # what the test file's auto-tiled runs ran on
DIM = 16
FIT_FIELDS = ("dram_bytes_per_cycle", "cache_bytes_per_cycle", "call_cycles", "tile_cycles")


@dataclass(frozen=True)
class Run:
    """One plain-GEMM FireSim run: (M x K) @ (K x N), the PE array it ran on, its tiles in
    DIM-element blocks, and the measured cycles."""

    M: int
    K: int
    N: int
    pe: int
    tiles: tuple[int, int, int]  # (I, J, K) blocks
    cycles: float
    mapping: str = ""


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputFileError(
            f"{path} not found: DOSA's FireSim tables are read from ../shared/firesim "
            "(see its README); they are never committed"
        )
    with path.open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["prob.R"] == r["prob.S"] == r["prob.Q"] == "1"]


def parse_mapping(mapping: str) -> tuple[int, int, int, int]:
    """A DOSA mapping string -> (tile M, tile K, tile N, array side) in elements: the
    product of each dimension's factors below DRAM (L0-L2, spatial included: P = M,
    C = K, K = N), and the smallest power of two holding the spatial factors (DOSA ran
    each mapping on the smallest such array)."""
    f: dict[str, int] = {}
    spatial = [1]
    for level in ("L0[W] ", "L1[O] ", "L2[WI] "):
        if level not in mapping:
            raise ValueError(f"not a DOSA Gemmini mapping (no {level.strip()}): {mapping!r}")
        for w in mapping.split(level)[1].split(" - ")[0].split():
            m = re.fullmatch(r"([A-Z])(\d+)(X?)", w)
            if m is None:
                raise ValueError(f"cannot read {w!r} in mapping {mapping!r}")
            f[m.group(1)] = f.get(m.group(1), 1) * int(m.group(2))
            if m.group(3):
                spatial.append(int(m.group(2)))
    pe = 1 << max(0, math.ceil(math.log2(max(spatial))))
    return f.get("P", 1), f.get("C", 1), f.get("K", 1), pe


def _blocks(t: int, dim: int) -> int:
    return max(1, -(-min(t, dim) // DIM))


def training_runs(directory: str | Path | None = None, pe: int = 16) -> list[Run]:
    """The training file's plain GEMMs that ran on a `pe` x `pe` array (default
    directory: `FIRESIM_DIR`)."""
    out = []
    for r in _rows(Path(directory or FIRESIM_DIR) / TRAIN_CSV):
        M, K, N = int(r["prob.P"]), int(r["prob.C"]), int(r["prob.K"])
        tm, tk, tn, side = parse_mapping(r["mapping.mapping"])
        if side == pe:
            tiles = (_blocks(tm, M), _blocks(tn, N), _blocks(tk, K))
            out.append(
                Run(M, K, N, side, tiles, float(r["target.gemmini_cycle"]), r["mapping.mapping"])
            )
    return out


def auto_tiled_runs(directory: str | Path | None = None) -> list[Run]:
    """The test file's plain GEMMs with Gemmini's own tiler on the stock config; tiles from
    its `dse.auto_tiling` column (R_S_P_Q_C_K_N in elements)."""
    out = []
    for r in _rows(Path(directory or FIRESIM_DIR) / TEST_CSV):
        M, K, N = int(r["prob.P"]), int(r["prob.C"]), int(r["prob.K"])
        t = [int(x) for x in r["dse.auto_tiling"].split("_")]
        tiles = (_blocks(t[2], M), _blocks(t[5], N), _blocks(t[4], K))
        out.append(Run(M, K, N, 16, tiles, float(r["target.gemmini_auto_cycle"])))
    return out


def predict(runs: list[Run], model: TilerModel, *, auto: bool = False) -> np.ndarray:
    """Modelled cycles of `runs` on the stock config; `auto`: with tiled_matmul_auto's own
    tiles (the model's), else with each run's tiles."""
    M, K, N = (np.array([getattr(r, a) for r in runs]) for a in "MKN")
    tiles = None if auto else tuple(np.array([r.tiles[i] for r in runs]) for i in range(3))
    c = gemm_cost(
        M, K, N, STOCK_HW, regime="gemmini-tiler", context="harness", tiles=tiles, tiler=model
    )
    return c["cycles"]


def mape(pred: np.ndarray, runs: list[Run]) -> float:
    y = np.array([r.cycles for r in runs])
    return float(np.mean(np.abs(pred - y) / y))


def fit(runs: list[Run], base: TilerModel = SHIPPED_TILER) -> TilerModel:
    """`base` with its memory-system constants (`FIT_FIELDS`) fitted to `runs` (their own
    tiles): least mean absolute log error, Nelder-Mead from fixed starting points
    (deterministic). Bandwidths are fitted in log space, overheads as non-negative."""
    from scipy.optimize import minimize

    y = np.array([r.cycles for r in runs])

    def unpack(x) -> TilerModel:
        return replace(
            base,
            dram_bytes_per_cycle=float(np.exp(x[0])),
            cache_bytes_per_cycle=float(np.exp(x[1])),
            call_cycles=float(abs(x[2]) * 1000),
            tile_cycles=float(abs(x[3]) * 100),
        )

    def loss(x) -> float:
        return float(np.mean(np.abs(np.log(predict(runs, unpack(x)) / y))))

    best = None
    for bw_d, bw_c, call, tile in ((4, 16, 1, 1), (8, 8, 0.5, 2), (3, 12, 2, 0.5)):
        r = minimize(
            loss,
            [math.log(bw_d), math.log(bw_c), call, tile],
            method="Nelder-Mead",
            options={"maxiter": 800, "xatol": 1e-4, "fatol": 1e-7},
        )
        if best is None or r.fun < best.fun:
            best = r
    m = unpack(best.x)
    return replace(
        m,
        **{k: float(f"{getattr(m, k):.4g}") for k in FIT_FIELDS},
        source=f"cosearch.hw.firesim.fit on {len(runs)} plain-GEMM FireSim runs of DOSA's "
        f"training file on a 16x16 array (mean |log error| {best.fun:.3f})",
    )
