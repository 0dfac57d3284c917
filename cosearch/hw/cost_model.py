"""Analytical Gemmini cost model: GEMM and nonlinear-op cycles and energy, vectorised.

Owns the access counting (DRAM, scratchpad, accumulator, weight registers, MACs) of a GEMM
on a `GemminiConfig` under two mapping regimes, and the conversion to cycles and energy
with the per-access energies of `gemmini` (Accelergy/CACTI, size-dependent):

* ``optimal`` (default): the mapspace of ../shared/timeloop/GEMMINI_MODEL.md (DOSA's real
  Gemmini constraints) searched exactly, as Timeloop's mapper would with unlimited time:
  spatial C<=rows x K<=cols, outputs in the accumulator with P innermost, weights
  stationary in the PE registers, and every perfect factorisation of the DRAM-level tiles
  (p, c, n trips) with each choice of innermost DRAM loop; delay first, then energy.
* ``gemmini-tiler``: the tiles Gemmini's own software picks (gemmini.h
  ``tiled_matmul_auto``, WS, double buffering: half of each buffer per tile), its loop
  nest (i0, j0, k0 with k innermost, partial sums kept in the accumulator), padding to
  the array size, DMA time overlapped with compute per tile, plus instruction and
  pipeline fill/drain overheads (constants below).

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

log = logging.getLogger(__name__)

REGIMES = ("optimal", "gemmini-tiler")

# ---- gemmini-tiler overheads (documented assumptions, not fitted) ------------------------
MAX_BLOCK_LEN = 4  # mvin moves up to 4 DIM x DIM int8 blocks per instruction (64 B rows)
DMA_INSTR_CYCLES = 16  # fixed cost per mvin/mvout instruction (RoCC issue + DMA request)
FILL_DRAIN_CYCLES_PER_BLOCK = 0  # WS preloads are double-buffered in the PEs (hidden)
TILE_OVERHEAD_CYCLES = 64  # loop/config overhead per (i0, j0, k0) tile: fence, address calc

# ---- nonlinear ops on the normalization units (documented assumptions) -------------------
# passes over the data (each pass reads one int32 accumulator word per element) and integer
# ALU operations per element per pass (I-BERT-style integer softmax/GELU/LayerNorm); an
# int32 ALU op is charged 2x an 8-bit MAC. Throughput: one row of `pe_cols` elements/cycle.
NONLINEAR_PASSES = {"softmax": 3, "layernorm": 3, "gelu": 1, "residual": 1}
NONLINEAR_OPS_PER_PASS = {"softmax": 4, "layernorm": 3, "gelu": 6, "residual": 1}
ALU_OP_PJ = 2 * MAC_PJ

# Divisors considered per loop dimension (the smallest trip counts; larger ones are never
# better: every cost grows with the trip counts).
_D = 12
_DP = 8  # p trips tried with inner P (weights once): larger p only adds weight reloads
_F = np.float32  # candidate grids: float32 is exact enough (ranking at 1e-6) and 2x faster


@dataclass(frozen=True)
class Calibration:
    """Global factors fitted on the Timeloop reference data (see experiments/
    cost_model_validation): `energy_scale` multiplies the memory-access energy (everything
    but the MACs), standing for the gap between an exact search and Timeloop's
    unconverged random-pruned mapper; `cycles_scale` multiplies cycles."""

    energy_scale: float = 1.0
    cycles_scale: float = 1.0
    source: str = "unfitted"


# The shipped calibration: `cosearch.hw.calibrate.fit` on its held-out split of
# lut/timeloop/calibration.csv (tests/test_hw_cost_model.py re-fits and checks it).
SHIPPED_CALIBRATION = Calibration(
    energy_scale=1.043,
    cycles_scale=1.0,
    source="cosearch.hw.calibrate.fit on 16 rows of lut/timeloop/calibration.csv "
    "(even-numbered shapes, both configs; held-out split: calibrate.split)",
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
            (cnt["acc_update"] + cnt["acc_read"] + cnt["acc_fill"]) / (2 * Ks),
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


def tiler_tiles(M, K, N, h) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile sizes (in DIM x DIM blocks) of gemmini.h `tiled_matmul_auto` for WS with double
    buffering: start from sqrt of the accumulator half, then greedily grow K, J, I while
    the scratchpad half and the accumulator half still hold the tile."""
    dim = h["cols"]
    Ip, Jp, Kp = np.ceil(M / dim), np.ceil(N / dim), np.ceil(K / dim)
    sp_rows = h["sp_words"] / dim
    acc_rows = h["acc_words"] * h["cols"] / dim  # rows of DIM int32
    max_spad_rows = sp_rows / 2
    max_acc_rows = acc_rows / 2
    db_mats_in_partition = np.floor(sp_rows / 4 / dim)
    db_mats_in_acc = np.floor(acc_rows / 2 / dim)
    db_max_ij = np.floor(np.sqrt(db_mats_in_acc))
    db_max_k = np.floor(db_mats_in_partition / np.maximum(db_max_ij, 1))
    tI, tJ, tK = np.minimum(Ip, db_max_ij), np.minimum(Jp, db_max_ij), np.minimum(Kp, db_max_k)
    tI, tJ, tK = np.maximum(tI, 1), np.maximum(tJ, 1), np.maximum(tK, 1)

    def spad(i, j, k):
        return (i * k + k * j) * dim

    def acc(i, j):
        return i * j * dim

    while True:
        inc_k = (
            (spad(tI, tJ, tK + 1) <= max_spad_rows) & (acc(tI, tJ) <= max_acc_rows) & (tK + 1 <= Kp)
        )
        tK = tK + inc_k
        inc_j = (
            (spad(tI, tJ + 1, tK) <= max_spad_rows)
            & (acc(tI, tJ + 1) <= max_acc_rows)
            & (tJ + 1 <= Jp)
        )
        tJ = tJ + inc_j
        inc_i = (
            (spad(tI + 1, tJ, tK) <= max_spad_rows)
            & (acc(tI + 1, tJ) <= max_acc_rows)
            & (tI + 1 <= Ip)
        )
        tI = tI + inc_i
        if not (inc_k.any() or inc_j.any() or inc_i.any()):
            break
    return tI, tJ, tK


def _tiler(M, K, N, h, cal) -> dict[str, np.ndarray]:
    """Gemmini's software tiler: loop i0, j0, k0 (k innermost), A re-read per j0, B per i0."""
    dim = h["cols"]
    tI, tJ, tK = tiler_tiles(M, K, N, h)
    Ip, Jp, Kp = np.ceil(M / dim), np.ceil(N / dim), np.ceil(K / dim)
    I0, J0, K0 = np.ceil(Ip / tI), np.ceil(Jp / tJ), np.ceil(Kp / tK)
    macs = M * K * N
    MK, KN, MN = M * K, K * N, M * N
    a_dram = MK * J0
    b_dram = KN * I0
    c_dram = MN  # int8 outputs written once (k innermost keeps partial sums in the acc)
    dram = a_dram + b_dram + c_dram
    sp_fill = a_dram + b_dram
    reg_fill = KN * I0  # one preload per (k, j) block per i0 tile
    sp_read = MK * Jp + reg_fill  # each A block streamed once per J block of its tile
    acc_upd = MN * Kp
    acc_read = MN * (Kp - 1) + MN  # read-modify-write after the first k block + mvout
    # cycles: padded blocks on the array; per tile max(compute, DMA) with the tile averages
    # (edge tiles are smaller: Gemmini computes only the blocks that exist), plus overheads
    n_tiles = I0 * J0 * K0
    compute_tile = Ip * Jp * Kp * dim / n_tiles + (
        Jp * Kp * I0 * FILL_DRAIN_CYCLES_PER_BLOCK / n_tiles
    )
    dma_bytes_tile = dram / n_tiles
    # mvin: one instruction per DIM rows x MAX_BLOCK_LEN blocks; mvout: one per DIM x DIM
    n_instr = (
        I0 * J0 * K0 * (tI * np.ceil(tK / MAX_BLOCK_LEN) + tK * np.ceil(tJ / MAX_BLOCK_LEN))
        + Ip * Jp
    )
    dma_tile = dma_bytes_tile / h["bw"] + n_instr * DMA_INSTR_CYCLES / n_tiles
    tile_cycles = np.maximum(compute_tile, dma_tile) + TILE_OVERHEAD_CYCLES
    prologue = (tI * tK + tK * tJ) * dim * dim / h["bw"]  # first tile's loads, not hidden
    cycles = n_tiles * tile_cycles + prologue
    energy = _energy(macs, reg_fill, sp_read, sp_fill, acc_read, acc_upd, dram, h, cal)
    return {
        "cycles": cycles * cal.cycles_scale,
        "energy_pJ": energy,
        "dram_bytes": dram,
        "utilization": macs / (cycles * h["rows"] * h["cols"]),
    }


def gemm_cost(
    M,
    K,
    N,
    hw: str | GemminiConfig | list,
    *,
    regime: str = "optimal",
    calibration: Calibration | None = None,
    chunk: int = 4096,
) -> dict[str, np.ndarray]:
    """Cycles, energy (pJ), DRAM bytes and utilisation of GEMMs (M x K) @ (K x N).

    `M, K, N` are scalars or equal-length arrays; `hw` one config (name or object) or one
    per GEMM. Duplicate (shape, hw) rows are costed once. Returns float arrays."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIMES)}")
    cal = default_calibration() if calibration is None else calibration
    M, K, N = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in (M, K, N))
    )
    if np.any(M <= 0) or np.any(K <= 0) or np.any(N <= 0):
        raise ValueError("GEMM dimensions must be positive")
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
    if max(M.max(), K.max(), N.max()) < 2**18 and len(uniq_cfg) < 2**8:
        packed = ((M * 2**18 + K) * 2**18 + N) * 2**8 + hidx
        _, first, inv = np.unique(packed, return_index=True, return_inverse=True)
        ukey = np.stack([M, K, N, hidx], axis=1)[first]
    else:
        ukey, inv = np.unique(np.stack([M, K, N, hidx], axis=1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    fn = _optimal if regime == "optimal" else _tiler
    parts = []
    for s in range(0, len(ukey), chunk):
        kk = ukey[s : s + chunk]
        h = _hw_arrays(uniq_cfg, kk[:, 3])
        parts.append(
            fn(kk[:, 0].astype(float), kk[:, 1].astype(float), kk[:, 2].astype(float), h, cal)
        )
    return {k: np.concatenate([p[k] for p in parts])[inv] for k in parts[0]}


def nonlinear_cost(kind: str, elements, hw: str | GemminiConfig) -> tuple[np.ndarray, np.ndarray]:
    """(cycles, energy pJ) of a nonlinear op over `elements` values on the normalization
    units, fused with the producing GEMM's output in the accumulator (no extra DRAM
    traffic): `passes` reads of one int32 accumulator word per element, ALU work, one
    write back; `pe_cols` elements per cycle. Without normalization units the op is
    charged as if done by the host at 1 element/cycle with a DRAM round trip."""
    cfg = get_hw(hw)
    el = np.asarray(elements, dtype=float)
    if kind not in NONLINEAR_PASSES:
        raise ValueError(f"unknown nonlinear op '{kind}'; known: {', '.join(NONLINEAR_PASSES)}")
    passes, ops = NONLINEAR_PASSES[kind], NONLINEAR_OPS_PER_PASS[kind]
    acc_r = float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols))
    acc_w = float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols, write=True))
    energy = el * (passes * (acc_r + ops * ALU_OP_PJ) + acc_w)
    if cfg.has_normalizations:
        cycles = el * passes / cfg.pe_cols
    else:
        cycles = el * passes + 2 * el / cfg.dram_bytes_per_cycle
        energy = energy + 2 * el * DRAM_PJ_PER_BYTE
    return cycles, energy
