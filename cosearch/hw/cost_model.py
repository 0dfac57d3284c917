"""Analytical Gemmini cost model: GEMM and nonlinear-op cycles and energy, vectorised.

Owns the access counting (DRAM, scratchpad, accumulator, weight registers, MACs) of a GEMM
on a `GemminiConfig` under two mapping regimes, and the conversion to cycles and energy
with the per-access energies of `gemmini` (Accelergy/CACTI, size-dependent):

* ``optimal`` (default): the mapspace of ../shared/timeloop/GEMMINI_MODEL.md (DOSA's real
  Gemmini constraints) searched exactly, as Timeloop's mapper would with unlimited time:
  spatial C<=rows x K<=cols, outputs in the accumulator with P innermost, weights
  stationary in the PE registers, and every perfect factorisation of the DRAM-level tiles
  (p, c, n trips) with each choice of innermost DRAM loop; delay first, then energy.
* ``gemmini-tiler``: Gemmini's own software (gemmini-rocc-tests ``gemmini.h``
  ``tiled_matmul_auto`` / ``tiled_matmul_outer`` on the LoopMatmul unroller): its tiles,
  loop nest and operand reuse, a weight preload per block column, double-buffered tiles,
  and the SoC memory system (DRAM and a shared cache) with constants fitted to FireSim
  RTL measurements (`TilerModel`, `SHIPPED_TILER`; cosearch.hw.firesim). The context a
  GEMM runs in (`workload.CONTEXTS`: weights from DRAM, activations, fused softmax, int32
  outputs) changes its cost here.

Nonlinear ops run on the normalization units; in the gemmini-tiler regime LayerNorm and
residual adds are their own passes over memory, as transformer.c runs them.

It must not read LUTs or run Timeloop; `lut` and `timeloop` do that.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from cosearch.hw.gemmini import (
    DRAM_PJ_PER_BYTE,
    MAC_PJ,
    REG_PJ,
    GemminiConfig,
    acc_access_pj,
    get_hw,
    sp_access_pj,
)
from cosearch.hw.workload import CONTEXTS

log = logging.getLogger(__name__)

REGIMES = ("optimal", "gemmini-tiler")


# ---- gemmini-tiler regime: the software, the SoC memory system -------------------------
@dataclass(frozen=True)
class TilerModel:
    """What the gemmini-tiler regime models, and its memory-system constants.

    The mechanisms are gemmini.h's (not fitted): `growth`, the order tiled_matmul_auto
    grows its tiles in; `operand_reuse`, tiled_matmul_outer's a_reuse/b_reuse (an operand
    that fits in at most two tiles is not re-read); `preload`, LoopMatmul's order k, j, i
    (one DIM-cycle weight preload per block column, then the tile's rows). `memory`:
    'cache' (DRAM for first touches, the SoC's shared cache of `cache_kib` for data already
    there and for re-reads whose reuse distance fits) or 'flat' (every byte at the config's
    DRAM bandwidth, `tile_cycles` per tile: the previous model, kept for the validation's
    ablation). The numbers (`dram_bytes_per_cycle`, `cache_bytes_per_cycle`,
    `call_cycles`, `tile_cycles`) are fitted by `cosearch.hw.firesim.fit` to FireSim RTL
    runs of Gemmini; `cache_kib` is Chipyard's default L2 (512 KiB, not fitted) and
    `cache_pj_per_byte` the CACTI read energy of an SRAM of that size (GEMMINI_MODEL.md's
    512 KiB table row; no tag or coherence energy, so a lower bound)."""

    growth: str = "JIK"
    operand_reuse: bool = True
    preload: bool = True
    memory: str = "cache"
    dram_bytes_per_cycle: float = 8.0
    cache_bytes_per_cycle: float = 16.0
    cache_kib: int = 512
    call_cycles: float = 0.0
    tile_cycles: float = 0.0
    cache_pj_per_byte: float = float(sp_access_pj(512)) / 16.0
    source: str = "unfitted"

    def __post_init__(self) -> None:
        if sorted(self.growth) != ["I", "J", "K"]:
            raise ValueError(f"growth must order I, J and K, got {self.growth!r}")
        if self.memory not in ("cache", "flat"):
            raise ValueError(f"memory must be 'cache' or 'flat', got {self.memory!r}")


# The previous model (tiles grown K, J, I; no operand reuse; padded blocks x DIM cycles;
# every byte at 8 B/cycle; 64 cycles per tile), for the validation's ablation.
PREVIOUS_TILER = TilerModel(
    growth="KJI",
    operand_reuse=False,
    preload=False,
    memory="flat",
    tile_cycles=64.0,
    source="the model before the FireSim comparison (assumed constants)",
)
# The shipped model: `cosearch.hw.firesim.fit` on DOSA's FireSim training runs
# (tests/test_hw_firesim.py re-fits it when ../shared/firesim is present).
SHIPPED_TILER = TilerModel(
    dram_bytes_per_cycle=6.138,
    cache_bytes_per_cycle=16.0,
    call_cycles=941.5,
    tile_cycles=97.43,
    source="cosearch.hw.firesim.fit on 68 plain-GEMM FireSim runs of DOSA's training file "
    "on a 16x16 array (mean |log error| 0.190)",
)


# ---- nonlinear ops on the normalization units (documented assumptions) -------------------
# passes over the data (each pass reads one int32 accumulator word per element) and integer
# ALU operations per element per pass (I-BERT-style integer softmax/GELU/LayerNorm); an
# int32 ALU op is charged 2x an 8-bit MAC. Throughput: one row of `pe_cols` elements/cycle.
# The causal mask: one accumulator write per score (an additive bias), no ALU pass.
NONLINEAR_PASSES = {"softmax": 3, "layernorm": 3, "gelu": 1, "residual": 1, "mask": 0}
NONLINEAR_OPS_PER_PASS = {"softmax": 4, "layernorm": 3, "gelu": 6, "residual": 1, "mask": 0}
# Per element, the bytes an op's own pass reads and writes and its extra accumulator
# writes, in the gemmini-tiler regime (transformer.c): LayerNorm moves the int32 GEMM output
# into the accumulator and writes int8; a residual add moves two int8 tensors in (the
# second accumulates) and writes one; the mask is an int32 bias moved in. Softmax and GELU
# are fused into their GEMM's output.
NONLINEAR_IO = {"layernorm": (4, 1, 1), "residual": (2, 1, 2), "mask": (4, 0, 0)}
ALU_OP_PJ = 2 * MAC_PJ

# Divisors considered per loop dimension (the smallest trip counts; larger ones are never
# better: every cost grows with the trip counts).
_D = 12
_DP = 8  # p trips tried with inner P (weights once): larger p only adds weight reloads
_F = np.float32  # candidate grids: float32 is exact enough (ranking at 1e-6) and 2x faster


@dataclass(frozen=True)
class Calibration:
    """Global factors that can be fitted on Timeloop data (`cosearch.hw.calibrate.fit`):
    `energy_scale` multiplies the memory-access energy (everything but the MACs), i.e. the
    gap between an exact search and Timeloop's unconverged random-pruned mapper;
    `cycles_scale` multiplies cycles. The shipped model uses none (SHIPPED_CALIBRATION)."""

    energy_scale: float = 1.0
    cycles_scale: float = 1.0
    source: str = "unfitted"


# The shipped calibration: none. `cosearch.hw.calibrate.fit` on lut/timeloop/calibration.csv
# (Timeloop's random mapper alone) gives an energy factor of 1.043, but that factor stands
# for the mapper's unconverged search, not for the hardware: against Timeloop's best
# evaluation of 192 held-out rows (experiments/cost_model_validation/results/
# timeloop_reference_metrics.json) the unfitted model is the closer one (energy MAPE 0.31 %
# vs 2.9 % with the factor, refitted: 1.044). tests/test_hw_cost_model.py checks both on the
# committed rows.
SHIPPED_CALIBRATION = Calibration(
    energy_scale=1.0,
    cycles_scale=1.0,
    source="unfitted: the factor fitted on Timeloop's random mapper (1.043, "
    "cosearch.hw.calibrate.fit) fits its unconverged search; unfitted is closer to "
    "Timeloop's best evaluation of 192 held-out rows (experiments/cost_model_validation)",
)


def default_calibration() -> Calibration:
    return SHIPPED_CALIBRATION


# ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=100_000)
def _small_divisors(v: int) -> tuple[int, ...]:
    ds = [d for d in range(1, int(v**0.5) + 1) if v % d == 0]
    ds = sorted(set(ds + [v // d for d in ds]))
    return tuple(ds[:_D])


def _divisor_table(values: np.ndarray) -> np.ndarray:
    """(G, _D) smallest divisors of each value, padded with +inf."""
    uniq, inv = np.unique(values, return_inverse=True)
    tab = np.full((len(uniq), _D), np.inf, dtype=_F)
    for i, v in enumerate(uniq):
        ds = _small_divisors(int(v))
        tab[i, : len(ds)] = ds
    return tab[inv.reshape(-1)]


def _largest_divisor_le(x: np.ndarray, cap: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for d in range(int(np.max(cap)), 0, -1):
        out = np.where((out == 0) & (d <= cap) & (x % d == 0), d, out)
    return out


def _hw_arrays(hws: list[GemminiConfig], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per-GEMM hardware parameters gathered from a list of configs."""
    cols = {
        "rows": [h.pe_rows for h in hws],
        "cols": [h.pe_cols for h in hws],
        "sp_words": [h.sp_words for h in hws],
        "acc_words": [h.acc_words_per_col for h in hws],
        "bw": [h.dram_bytes_per_cycle for h in hws],
        "sp_r": [float(sp_access_pj(h.sp_kib, row_bytes=h.pe_cols)) / h.pe_cols for h in hws],
        "sp_w": [
            float(sp_access_pj(h.sp_kib, write=True, row_bytes=h.pe_cols)) / h.pe_cols for h in hws
        ],
        "acc_r": [float(acc_access_pj(h.acc_kib, pe_cols=h.pe_cols)) for h in hws],
        "acc_w": [float(acc_access_pj(h.acc_kib, pe_cols=h.pe_cols, write=True)) for h in hws],
    }
    return {k: np.asarray(v, dtype=float)[idx] for k, v in cols.items()}


def _energy(macs, reg_fill, sp_read, sp_fill, acc_read, acc_write, dram, h, cal):
    mem = (
        REG_PJ * (macs + reg_fill)
        + h["sp_r"] * sp_read
        + h["sp_w"] * sp_fill
        + h["acc_r"] * acc_read
        + h["acc_w"] * acc_write
        + DRAM_PJ_PER_BYTE * dram
    )
    return MAC_PJ * macs + cal.energy_scale * mem


@functools.lru_cache(maxsize=4096)
def _next_divisor_row(v: int) -> np.ndarray:
    """next[t] = smallest divisor of v that is >= t, for t = 0..v+1 (v+1 -> inf)."""
    ds = np.array(sorted(_all_divisors(v)), dtype=float)
    idx = np.searchsorted(ds, np.arange(v + 2))
    return np.append(ds, np.inf)[idx]


@functools.lru_cache(maxsize=100_000)
def _all_divisors(v: int) -> tuple[int, ...]:
    ds = [d for d in range(1, int(v**0.5) + 1) if v % d == 0]
    return tuple(sorted(set(ds + [v // d for d in ds])))


class _NextDivisor:
    """Smallest divisor of each of `values` (G,) that is >= t, by table lookup."""

    def __init__(self, values: np.ndarray) -> None:
        uniq, inv = np.unique(values.astype(np.int64), return_inverse=True)
        rows = [_next_divisor_row(int(v)) for v in uniq]
        offs = np.cumsum([0] + [len(r) for r in rows[:-1]]).astype(np.int64)
        self.flat = np.concatenate(rows).astype(_F)
        self.off = offs[inv.reshape(-1)]
        self.v = values.astype(np.int64)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        extra = (1,) * (t.ndim - 1)
        v = self.v.reshape(self.v.shape + extra)
        ti = np.minimum(np.ceil(np.maximum(t, 0) - 1e-6), v + 1).astype(np.int64)
        return self.flat[self.off.reshape(v.shape) + ti]


def _ws_mapping(M, K, N, Cs, Ks, p, fW, fI, fO, h, cal):
    """Cycles, energy and access counts of one mapping of the Timeloop/DOSA Gemmini
    mapspace: spatial Cs x Ks, P-tile trips `p`, refetch factors of weights / inputs /
    outputs at DRAM `fW`, `fI`, `fO` (1 for the tensor the innermost DRAM loop does not
    index). Word counts as Timeloop's (int8 words in DRAM and scratchpad, int32 in the
    accumulator); arrays broadcast."""
    macs = M * K * N
    MK, KN, MN = M * K, K * N, M * N
    cnt = {
        "dram": KN * fW + MK * fI + MN * (2 * fO - 1),  # reads + output writes/spills
        "sp_fill": KN * fW + MK * fI,
        "reg_fill": KN * p,  # one weight per PE, reloaded per (C, K) step of each P tile
        "acc_update": macs / Cs,  # one per column per cycle after the spatial C reduction
        "acc_fill": MN * (fO - 1),  # spilled partial sums read back
    }
    cnt["sp_read"] = macs / Ks + cnt["reg_fill"]  # inputs multicast to Ks columns
    cnt["acc_read"] = cnt["acc_update"] - MN + cnt["acc_fill"]
    cycles = np.maximum(
        np.maximum(macs / (Cs * Ks), cnt["dram"] / h["bw"]),
        np.maximum(
            (cnt["sp_read"] + cnt["sp_fill"]) / (2 * h["cols"]),
            # the accumulator's two ports serve updates and reads (acc_read counts the
            # fills of spilled partial sums already): Timeloop's cycles to the cycle on
            # every reference row both cost with one mapping (timeloop_acc_port.csv)
            (cnt["acc_update"] + cnt["acc_read"]) / (2 * Ks),
        ),
    )
    energy = _energy(
        macs,
        cnt["reg_fill"],
        cnt["sp_read"],
        cnt["sp_fill"],
        cnt["acc_read"],
        cnt["acc_update"] + cnt["acc_fill"],
        cnt["dram"],
        h,
        cal,
    )
    return cycles, energy, cnt


def mapping_cost(
    M: int,
    K: int,
    N: int,
    hw: str | GemminiConfig,
    *,
    p: int,
    c: int,
    n: int,
    inner: str,
    calibration: Calibration | None = None,
) -> dict[str, float]:
    """Cost of one explicit mapping (DRAM trips p over M, c over K, n over N; `inner` the
    innermost DRAM loop 'P', 'C' or 'N'), e.g. to re-cost a Timeloop map.txt. Spatial
    factors are the largest divisors of K and N that fit the array."""
    if inner not in ("P", "C", "N"):
        raise ValueError(f"inner must be 'P', 'C' or 'N', got {inner!r}")
    cfg = get_hw(hw)
    cal = Calibration() if calibration is None else calibration
    h = _hw_arrays([cfg], np.array([0]))
    Mx, Kx, Nx = (np.array([float(v)]) for v in (M, K, N))
    Cs = _largest_divisor_le(Kx, h["rows"])
    Ks = _largest_divisor_le(Nx, h["cols"])
    fW = 1.0 if inner == "P" else float(p)
    fI = 1.0 if inner == "N" else float(n)
    fO = 1.0 if inner == "C" else float(c)
    cycles, energy, cnt = _ws_mapping(Mx, Kx, Nx, Cs, Ks, float(p), fW, fI, fO, h, cal)
    return {
        "cycles": float(cycles[0]),
        "energy_pJ": float(energy[0]),
        **{k: float(np.asarray(v).reshape(-1)[0]) for k, v in cnt.items()},
    }


def _optimal(M, K, N, h, cal) -> dict[str, np.ndarray]:
    """Exact search of the Timeloop/DOSA Gemmini mapspace (delay first, then energy).

    DRAM-level trips p, c, n (P = M, C = K, K = N tiles) with one innermost DRAM loop:
    the tensor that does not depend on it is fetched once, the others once per trip
    (P inner: weights once; C inner: outputs stay in the accumulator; N inner: inputs
    once). The free trip of each case is set to what relaxes the buffer constraints most
    (inner C: c = K/Cs, inner N: n = N/Ks, both cost nothing), the trips that cost are
    searched over the divisors (`_D` smallest) with the remaining one the smallest
    feasible divisor, so each GEMM needs 2*_D + _D**2 candidates."""
    G = len(M)
    macs64 = M * K * N
    M, K, N = M.astype(_F), K.astype(_F), N.astype(_F)
    h = {k: v.astype(_F) for k, v in h.items()}
    Cs = _largest_divisor_le(K, h["rows"])
    Ks = _largest_divisor_le(N, h["cols"])
    Kc, Nc = (K // Cs).astype(np.int64), (N // Ks).astype(np.int64)
    AW, SPW = h["acc_words"], h["sp_words"]
    next_c, next_n = _NextDivisor(Kc), _NextDivisor(Nc)
    pt = _divisor_table(M.astype(np.int64))  # (G, D)
    e1 = lambda a: a[:, None]  # noqa: E731
    e2 = lambda a: a[:, None, None]  # noqa: E731
    cands = []  # (p, c, n, fW, fI, fO) broadcastable, flattened per case
    # inner C: c = Kc (Ct = Cs); per p the smallest n with Pt*Nt/Ks <= AW, Cs*(Pt+Nt) <= SPW
    Pt = e1(M) / pt
    with np.errstate(divide="ignore", invalid="ignore"):
        nt_max = np.minimum(e1(AW * Ks) / Pt, e1(SPW / Cs) - Pt)
    n = next_n(e1(N) / np.maximum(nt_max, 1e-9))
    n = np.where(nt_max >= e1(Ks), n, np.inf)
    cands.append((pt, e1(Kc), n, pt, n, 1.0))
    # inner N: n = Nc (Nt = Ks); per p the smallest c with Ct*(Pt+Ks) <= SPW, Pt <= AW
    c = next_c(e1(K) * (Pt + e1(Ks)) / e1(SPW))
    c = np.where(Pt <= e1(AW), c, np.inf)
    cands.append((pt, c, e1(Nc), pt, 1.0, c))
    # inner P: weights fetched once; grid over (p, n), smallest c for the scratchpad
    nt = _divisor_table(Nc.astype(np.int64))  # (G, D)
    p3, n3 = pt[:, :_DP, None], nt[:, None, :]
    Pt3, Nt3 = e2(M) / p3, e2(N) / n3
    c3 = next_c(e2(K) * (Pt3 + Nt3) / e2(SPW))
    c3 = np.where(Pt3 * Nt3 / e2(Ks) <= e2(AW), c3, np.inf)
    cands.append((p3, c3, n3, 1.0, n3, c3))

    best_cyc = np.full(G, np.inf)
    best_en = np.full(G, np.inf)
    best_dram = np.zeros(G)
    for p, _c, _n, fW, fI, fO in cands:
        # Infeasible candidates carry +inf trips, which make their cycles +inf (no NaN:
        # every count below is a sum of non-negative terms).
        nd = np.ndim(p) - 1
        bc = lambda a: a.reshape((G,) + (1,) * nd)  # noqa: E731, B023
        hx = {k: bc(v) for k, v in h.items()}
        cycles, energy, cnt = _ws_mapping(
            bc(M), bc(K), bc(N), bc(Cs), bc(Ks), p, fW, fI, fO, hx, cal
        )
        dram = cnt["dram"]
        shape = np.broadcast_shapes(cycles.shape, energy.shape, dram.shape)
        cycles, energy, dram = (
            np.broadcast_to(x, shape).reshape(G, -1) for x in (cycles, energy, dram)
        )
        cmin = cycles.min(axis=1)
        en = np.where(cycles <= cmin[:, None] * (1 + 1e-6), energy, np.inf)
        j = en.argmin(axis=1)
        r = np.arange(G)
        en_j, dram_j = en[r, j], dram[r, j]
        better = (cmin < best_cyc * (1 - 1e-6)) | (
            (cmin <= best_cyc * (1 + 1e-6)) & (en_j < best_en)
        )
        best_cyc = np.where(better, cmin, best_cyc)
        best_en = np.where(better, en_j, best_en)
        best_dram = np.where(better, dram_j, best_dram)
    if not np.all(np.isfinite(best_cyc)):
        bad = np.where(~np.isfinite(best_cyc))[0][:3]
        raise ValueError(f"no valid mapping for GEMM(s) {[(M[i], K[i], N[i]) for i in bad]}")
    best_cyc = best_cyc.astype(float)
    return {
        "cycles": best_cyc * cal.cycles_scale,
        "energy_pJ": best_en.astype(float),
        "dram_bytes": best_dram.astype(float),
        "utilization": macs64 / (best_cyc * h["rows"] * h["cols"]),
    }


def tiler_tiles(M, K, N, h, *, softmax=None, growth: str = "JIK"):
    """Tile sizes (in DIM x DIM blocks) of gemmini.h `tiled_matmul_auto` for WS with double
    buffering (half of each buffer per tile): start from sqrt of the accumulator half (a
    fused softmax/LayerNorm starts from one full row of blocks, 1 x J x 1), then grow J, I
    and K by one block each, in that order, while the scratchpad and accumulator halves
    still hold the tile. `growth` names another order (the ablation's)."""
    dim = h["cols"]
    Ip, Jp, Kp = np.ceil(M / dim), np.ceil(N / dim), np.ceil(K / dim)
    sp_rows = h["sp_words"] / dim
    acc_rows = h["acc_words"] * h["cols"] / dim  # rows of DIM int32
    max_spad_rows = sp_rows / 2
    max_acc_rows = acc_rows / 2
    db_mats_in_partition = np.floor(sp_rows / 4 / dim)
    db_mats_in_acc = np.floor(acc_rows / 2 / dim)
    db_max_ij = np.maximum(np.floor(np.sqrt(db_mats_in_acc)), 1)
    db_max_k = np.floor(db_mats_in_partition / db_max_ij)
    tI, tJ, tK = np.minimum(Ip, db_max_ij), np.minimum(Jp, db_max_ij), np.minimum(Kp, db_max_k)
    tI, tJ, tK = np.maximum(tI, 1), np.maximum(tJ, 1), np.maximum(tK, 1)
    if softmax is not None:
        sm = np.broadcast_to(np.asarray(softmax, dtype=bool), np.shape(M))
        tI, tJ, tK = np.where(sm, 1, tI), np.where(sm, Jp, tJ), np.where(sm, 1, tK)

    def spad(i, j, k):
        return (i * k + k * j) * dim

    def acc(i, j):
        return i * j * dim

    while True:
        grew = np.zeros(np.shape(tI), dtype=bool)
        for d in growth:
            if d == "J":
                inc = (spad(tI, tJ + 1, tK) <= max_spad_rows) & (acc(tI, tJ + 1) <= max_acc_rows)
                inc &= tJ + 1 <= Jp
                tJ = tJ + inc
            elif d == "I":
                inc = (spad(tI + 1, tJ, tK) <= max_spad_rows) & (acc(tI + 1, tJ) <= max_acc_rows)
                inc &= tI + 1 <= Ip
                tI = tI + inc
            else:
                inc = (spad(tI, tJ, tK + 1) <= max_spad_rows) & (tK + 1 <= Kp)
                tK = tK + inc
            grew |= inc
        if not grew.any():
            break
    return tI, tJ, tK


def _axis_classes(P, t, dim):
    """Tiles along one GEMM axis of P elements in tiles of t blocks, as three classes
    (first, interior, last): counts, blocks and real elements, each (G, 3)."""
    Pp = np.ceil(P / dim)
    T = np.ceil(Pp / t)
    last_b = Pp - (T - 1) * t
    last_e = P - (T - 1) * t * dim
    one = T == 1
    counts = np.stack([np.ones_like(T), np.maximum(T - 2, 0), (T >= 2).astype(float)], -1)
    blocks = np.stack([np.where(one, last_b, t), t, last_b], -1)
    elems = np.stack([np.where(one, last_e, t * dim), t * dim, last_e], -1)
    return counts, blocks, elems, T


def _tiler(M, K, N, h, cal, *, model, context, tiles=None) -> dict[str, np.ndarray]:
    """Gemmini's software tiler on the hardware loop unroller (gemmini.h
    `tiled_matmul_outer` + LoopMatmul): loop i0, j0, k0 over tiles (k innermost, partial
    sums stay in the accumulator); A re-read per j0 and B per i0 unless the operand fits
    in at most two tiles (`a_reuse`/`b_reuse`); inside a tile, per (k, j) block column one
    weight preload (DIM cycles) and the tile's rows streamed through the array; tiles
    double-buffered, so a tile costs max(compute, its DMA) plus a fixed overhead, with the
    first tile's loads and the last tile's stores exposed. Memory (`model.memory`):
    'cache' serves first touches from DRAM unless the context says the operand is already
    in the SoC cache, and re-reads from the cache when their reuse distance fits in it;
    'flat' moves every byte at the config's DRAM bandwidth (the previous model)."""
    dim = h["cols"]
    ctx = {c: np.asarray([x == c for x in context]) for c in (*CONTEXTS, "harness")}
    if tiles is None:
        sm = ctx["softmax"] | ctx["kv-softmax"]
        tI, tJ, tK = tiler_tiles(M, K, N, h, softmax=sm, growth=model.growth)
    else:
        tI, tJ, tK = (np.asarray(t, dtype=float) for t in tiles)
    ci, bi, ri, I0 = _axis_classes(M, tI, dim)
    cj, bj, rj, J0 = _axis_classes(N, tJ, dim)
    Kp = np.ceil(K / dim)
    K0 = np.ceil(Kp / tK)
    lK = Kp - (K0 - 1) * tK
    ck = np.stack([K0 - 1, np.ones_like(K0)], -1)
    bk = np.stack([tK, lK], -1)
    rk = np.stack([tK * dim, K - (K0 - 1) * tK * dim], -1)
    # broadcast to (G, i class, j class, k class)
    e = lambda a, ax: np.expand_dims(a, tuple(x for x in (1, 2, 3) if x != ax))  # noqa: E731
    g = lambda a: a[:, None, None, None]  # noqa: E731
    count = e(ci, 1) * e(cj, 2) * e(ck, 3)
    rows, cols, kk = e(ri, 1), e(rj, 2), e(rk, 3)
    if model.preload:
        comp = e(bk, 3) * e(bj, 2) * (dim[:, None, None, None] + rows)
    else:
        comp = e(bk, 3) * e(bj, 2) * e(bi, 1) * g(dim)
    first_i = np.array([True, False, False])[None, :, None, None]
    first_j = np.array([True, False, False])[None, None, :, None]
    last_k = np.array([False, True])[None, None, None, :]
    a_reuse = model.operand_reuse & (I0 * K0 <= 2)
    b_reuse = model.operand_reuse & (J0 * K0 <= 2)
    a_load = first_j | ~g(a_reuse)
    b_load = first_i | ~g(b_reuse)
    a_bytes = np.where(a_load, rows * kk, 0.0)
    b_bytes = np.where(b_load, kk * cols, 0.0)
    out_bytes = np.where(ctx["weights-int32"], 4.0, 1.0)
    st_bytes = np.where(last_k, rows * cols * g(out_bytes), 0.0)
    # where each byte comes from: the SoC cache or DRAM
    cache_b = model.cache_kib * 1024.0
    if model.memory == "cache":
        harness_warm = ctx["harness"] & (M * K + K * N + M * N <= cache_b)
        a_warm = harness_warm | (~ctx["harness"] & (M * K <= cache_b))
        # weights and the KV cache (contexts kv, kv-softmax) come from DRAM on first touch
        b_warm = harness_warm | ((ctx["activations"] | ctx["softmax"]) & (K * N <= cache_b))
        a_hit = tI * dim * K + K * tJ * dim <= cache_b  # A panel + B panel between re-reads
        b_hit = K * N + tI * dim * K <= cache_b  # all of B + an A panel
        a_cached = np.where(first_j, g(a_warm), g(a_hit))
        b_cached = np.where(first_i, g(b_warm), g(b_hit))
        out_cached = g(M * N * out_bytes <= cache_b)
        bw_dram, bw_cache = model.dram_bytes_per_cycle, model.cache_bytes_per_cycle
    else:
        a_cached = b_cached = out_cached = np.zeros((1, 1, 1, 1), dtype=bool)
        bw_dram = bw_cache = g(h["bw"])
    ld_cache = np.where(a_cached, a_bytes, 0.0) + np.where(b_cached, b_bytes, 0.0)
    ld_dram = a_bytes + b_bytes - ld_cache
    t_ld = ld_dram / bw_dram + ld_cache / bw_cache
    t_st = st_bytes / bw_cache
    tile = np.maximum(comp, t_ld + t_st) + model.tile_cycles
    flat = lambda a: np.broadcast_to(a, count.shape).reshape(len(M), -1)  # noqa: E731
    total = (flat(count) * flat(tile)).sum(1)
    # exposed: the first tile's loads (classes i first, j first, k first) and the last
    # tile's stores (i last, j last, k last; the first class when there is one tile)
    k_first = np.where(K0 > 1, 0, 1).astype(int)
    r = np.arange(len(M))
    il = np.where(I0 >= 2, 2, 0).astype(int)
    jl = np.where(J0 >= 2, 2, 0).astype(int)
    t_ld_b = np.broadcast_to(t_ld, count.shape)
    t_st_b = np.broadcast_to(t_st, count.shape)
    cycles = total + t_ld_b[r, 0, 0, k_first] + t_st_b[r, il, jl, 1] + model.call_cycles

    def tot(a):
        return (flat(count) * flat(a)).sum(1)

    macs = M * K * N
    a_all, b_all, st_all = tot(a_bytes), tot(b_bytes), tot(st_bytes)
    cache_read = tot(ld_cache)
    dram_read = a_all + b_all - cache_read
    st_dram = np.where(out_cached[:, 0, 0, 0], 0.0, st_all)
    reg_fill = K * N * I0  # one weight preload per (k, j) block per i0 tile
    sp_read = M * K * np.ceil(N / dim) + reg_fill  # A streamed once per J block of its tile
    acc_upd = M * N * Kp
    acc_read = M * N * Kp  # read-modify-write after the first k block, plus the mvout
    energy = (
        _energy(
            macs, reg_fill, sp_read, a_all + b_all, acc_read, acc_upd, dram_read + st_dram, h, cal
        )
        + cal.energy_scale * (cache_read + st_all - st_dram) * model.cache_pj_per_byte
    )
    return {
        "cycles": cycles * cal.cycles_scale,
        "energy_pJ": energy,
        "dram_bytes": dram_read + st_dram,
        "cache_bytes": cache_read + st_all - st_dram,
        "utilization": macs / (cycles * h["rows"] * h["cols"]),
    }


def gemm_cost(
    M,
    K,
    N,
    hw: str | GemminiConfig | list,
    *,
    regime: str = "optimal",
    context="weights",
    tiles=None,
    calibration: Calibration | None = None,
    tiler: TilerModel | None = None,
    chunk: int = 4096,
) -> dict[str, np.ndarray]:
    """Cycles, energy (pJ), DRAM bytes and utilisation of GEMMs (M x K) @ (K x N).

    `M, K, N` are scalars or equal-length arrays; `hw` one config (name or object) or one
    per GEMM; `context` one of `workload.CONTEXTS` (or 'harness': a benchmark that ran the
    GEMM before timing it, so every operand that fits is in the cache), one or one per
    GEMM; it matters in the gemmini-tiler regime only, as do `tiles` (explicit (I, J, K)
    tile sizes in blocks instead of tiled_matmul_auto's) and `tiler` (default
    `SHIPPED_TILER`). Duplicate rows are costed once. Returns float arrays."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIMES)}")
    cal = default_calibration() if calibration is None else calibration
    model = SHIPPED_TILER if tiler is None else tiler
    M, K, N = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (M, K, N))
    )
    if np.any(M <= 0) or np.any(K <= 0) or np.any(N <= 0):
        raise ValueError("GEMM dimensions must be positive")
    known = (*CONTEXTS, "harness")
    ctx = [context] * len(M) if isinstance(context, str) else list(context)
    bad = sorted({c for c in ctx if c not in known})
    if bad or len(ctx) != len(M):
        raise ValueError(
            f"context must be one of {', '.join(known)} (one, or one per GEMM); got "
            f"{bad or f'{len(ctx)} contexts for {len(M)} GEMMs'}"
        )
    cidx = np.array([known.index(c) for c in ctx], dtype=np.int64)
    if regime == "optimal":
        cidx[:] = 0
    if isinstance(hw, (list, tuple)):
        cfgs = [get_hw(x) for x in hw]
        if len(cfgs) != len(M):
            raise ValueError(f"got {len(cfgs)} hardware configs for {len(M)} GEMMs")
        names = sorted({c.name for c in cfgs})
        uniq_cfg = [next(c for c in cfgs if c.name == n) for n in names]
        hidx = np.array([names.index(c.name) for c in cfgs])
    else:
        uniq_cfg = [get_hw(hw)]
        hidx = np.zeros(len(M), dtype=np.int64)
    cols = [M, K, N, hidx, cidx]
    if tiles is not None:
        cols += [np.broadcast_to(np.asarray(t, dtype=np.int64), M.shape) for t in tiles]
    key = np.stack(cols, axis=1)
    if tiles is None and max(M.max(), K.max(), N.max()) < 2**17 and len(uniq_cfg) < 2**8:
        packed = (((M * 2**17 + K) * 2**17 + N) * 2**8 + hidx) * 8 + cidx
        _, first, inv = np.unique(packed, return_index=True, return_inverse=True)
        ukey = key[first]
    else:
        ukey, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    parts = []
    for s in range(0, len(ukey), chunk):
        kk = ukey[s : s + chunk]
        h = _hw_arrays(uniq_cfg, kk[:, 3])
        MKN = [kk[:, i].astype(float) for i in range(3)]
        if regime == "optimal":
            parts.append(_optimal(*MKN, h, cal))
        else:
            t = None if tiles is None else tuple(kk[:, 5 + i].astype(float) for i in range(3))
            c = [known[i] for i in kk[:, 4]]
            parts.append(_tiler(*MKN, h, cal, model=model, context=c, tiles=t))
    out = {k: np.concatenate([p[k] for p in parts])[inv] for k in parts[0] if k != "cache_bytes"}
    return out


def nonlinear_cost(
    kind: str,
    elements,
    hw: str | GemminiConfig,
    *,
    regime: str = "optimal",
    instance_elements=None,
    tiler: TilerModel | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, energy pJ) of a nonlinear op over `elements` values on the normalization
    units: `passes` reads of one int32 accumulator word per element, ALU work, one write
    back, `pe_cols` elements per cycle.

    Softmax, GELU and the causal mask are fused with the producing GEMM in both regimes
    (transformer.c: Q.K^T with act=SOFTMAX, FFN1 with IGELU; the mask as an int32 bias
    loaded into the accumulator, from the cache in the gemmini-tiler regime). LayerNorm and
    residual adds: in the optimal regime fused in the accumulator too (the ideal); in the
    gemmini-tiler regime their own passes, as transformer.c runs them (tiled_norm_auto
    reads the int32 output of the GEMM before it and writes int8; tiled_resadd_auto reads
    two int8 tensors and writes one), through the cache when a tensor of
    `instance_elements` (default: `elements`) fits in it, else DRAM, DMA overlapped with
    the normalizer. Without normalization units the op is charged as if done by the host
    at 1 element/cycle with a DRAM round trip."""
    cfg = get_hw(hw)
    model = SHIPPED_TILER if tiler is None else tiler
    el = np.asarray(elements, dtype=float)
    if kind not in NONLINEAR_PASSES:
        raise ValueError(f"unknown nonlinear op '{kind}'; known: {', '.join(NONLINEAR_PASSES)}")
    if regime not in REGIMES:
        raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIMES)}")
    passes, ops = NONLINEAR_PASSES[kind], NONLINEAR_OPS_PER_PASS[kind]
    acc_r = float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols))
    acc_w = float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols, write=True))
    energy = el * (passes * (acc_r + ops * ALU_OP_PJ) + acc_w)
    cycles = el * passes / cfg.pe_cols
    if not cfg.has_normalizations:
        cycles = el * passes + 2 * el / cfg.dram_bytes_per_cycle
        return cycles, energy + 2 * el * DRAM_PJ_PER_BYTE
    if regime == "gemmini-tiler" and kind in NONLINEAR_IO:
        in_b, out_b, acc_writes = NONLINEAR_IO[kind]
        inst = el if instance_elements is None else np.asarray(instance_elements, dtype=float)
        cached = inst * max(in_b, out_b) <= model.cache_kib * 1024
        bw = np.where(cached, model.cache_bytes_per_cycle, model.dram_bytes_per_cycle)
        pj = np.where(cached, model.cache_pj_per_byte, DRAM_PJ_PER_BYTE)
        dma = el * (in_b + out_b) / bw
        cycles = np.maximum(cycles, dma)
        energy = energy + el * ((in_b + out_b) * pj + acc_writes * acc_w)
    return cycles, energy


def kv_write_cost(
    nbytes, hw: str | GemminiConfig, *, regime: str = "optimal", tiler: TilerModel | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, energy pJ) of writing `nbytes` of new K and V rows back to the KV cache in
    DRAM (`workload.MEMORY_KINDS`). Optimal regime: (0, 0), since its GEMM costs already
    write every output to DRAM (Timeloop's count), the qkv GEMM's K and V included. The
    gemmini-tiler regime stores small outputs in the SoC cache only, so the write-back
    is charged here: at the fitted DRAM bandwidth, not overlapped with compute (an upper
    bound; tiny next to the weights a pass reads), at `DRAM_PJ_PER_BYTE`."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIMES)}")
    b = np.asarray(nbytes, dtype=float)
    if regime == "optimal":
        return np.zeros_like(b), np.zeros_like(b)
    model = SHIPPED_TILER if tiler is None else tiler
    get_hw(hw)  # a bad name fails here, as in the other cost functions
    return b / model.dram_bytes_per_cycle, b * DRAM_PJ_PER_BYTE


def norm_capacity(seq_len, d_model, hw: str | GemminiConfig) -> tuple[np.ndarray, list[str]]:
    """Whether a Transformer's normalizations can run on `hw` as gemmini.h runs them, for
    rows of `seq_len` attention scores and `d_model` hidden values (arrays broadcast):
    the fused softmax (tiled_matmul_auto with act=SOFTMAX) needs a 1 x L x 1-block tile to
    pass tiled_matmul's checks (L padded to DIM, as accumulator rows, within the
    double-buffered half of the accumulator; its A and B blocks within half of the
    scratchpad), and tiled_norm_auto a DIM-row tile of the whole d-wide row in the
    accumulator. Returns the relative excess (0 where it fits: the constraint violation
    of a search) and, per entry, the reason ('' where it fits)."""
    cfg = get_hw(hw)
    dim = cfg.pe_cols
    acc_rows = cfg.acc_kib * 1024 / (4 * dim)
    sp_rows = cfg.sp_kib * 1024 / dim
    L, d = np.broadcast_arrays(np.asarray(seq_len, dtype=float), np.asarray(d_model, dtype=float))
    Lp = np.ceil(L / dim) * dim
    needs = {
        "softmax accumulator": (Lp, acc_rows / 2),
        "softmax scratchpad": (Lp + dim, sp_rows / 2),
        "LayerNorm accumulator": (dim * np.ceil(d / dim), acc_rows),
    }
    excess = np.zeros(L.shape)
    reasons = [""] * L.size
    for what, (need, have) in needs.items():
        over = np.maximum(need / have - 1.0, 0.0)
        excess = np.maximum(excess, over)
        for i in np.flatnonzero(over.ravel() > 0):
            row = "scores" if what.startswith("softmax") else "hidden values"
            n = int((L if row == "scores" else d).ravel()[i])
            r = (
                f"{what}: a row of {n} {row} needs {int(need.ravel()[i])} rows, "
                f"{cfg.name} has {int(have)}"
            )
            reasons[i] = f"{reasons[i]}; {r}" if reasons[i] else r
    return excess, reasons
