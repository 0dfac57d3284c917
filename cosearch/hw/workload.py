"""Workload extraction: `Arch` + sequence length -> the ops of one prefill on Gemmini.

Owns the op list of DESIGN.md's workload contract (GEMMs as (M x K) @ (K x N) with a
repeat count, nonlinear ops as element counts for the normalization units) and the set of
distinct GEMM shapes of a whole search space (what a LUT must cover). It must not cost
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosearch.space import Arch, SearchSpace

GEMM_KINDS = ("qkv", "attn_score", "attn_context", "out_proj", "ffn1", "ffn2", "lm_head")
NONLINEAR_KINDS = ("softmax", "layernorm", "gelu", "residual")
BACKBONE_KINDS = GEMM_KINDS[:-1] + NONLINEAR_KINDS  # everything but the LM head


@dataclass(frozen=True)
class Op:
    """One op kind of one layer. GEMMs: (M x K) @ (K x N) repeated `count` times
    (Q/K/V: 3, per-head attention: h). Nonlinear ops: `elements` values per instance,
    repeated `count` times, on the normalization units."""

    kind: str
    layer: int  # -1 for ops outside the layers (LM head, final LayerNorm)
    M: int = 0
    K: int = 0
    N: int = 0
    count: int = 1
    elements: int = 0

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS

    @property
    def macs(self) -> int:
        return self.M * self.K * self.N * self.count if self.is_gemm else 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.M, self.K, self.N)


def arch_ops(arch: Arch, space: SearchSpace, seq_len: int | None = None) -> list[Op]:
    """All ops of one prefill of `arch` over `seq_len` tokens (default: the space's)."""
    L = space.seq_len if seq_len is None else int(seq_len)
    d, hd = arch.d_model, space.head_dim
    ops: list[Op] = []
    for i, (h, f) in enumerate(zip(arch.heads, arch.d_ffn, strict=True)):
        a = hd * h
        ops += [
            Op("layernorm", i, count=1, elements=L * d),
            Op("qkv", i, L, d, a, count=3),
            Op("attn_score", i, L, hd, L, count=h),
            Op("softmax", i, count=h, elements=L * L),
            Op("attn_context", i, L, L, hd, count=h),
            Op("out_proj", i, L, a, d),
            Op("residual", i, count=1, elements=L * d),
            Op("layernorm", i, count=1, elements=L * d),
            Op("ffn1", i, L, d, f),
            Op("gelu", i, count=1, elements=L * f),
            Op("ffn2", i, L, f, d),
            Op("residual", i, count=1, elements=L * d),
        ]
    ops += [
        Op("layernorm", -1, count=1, elements=L * d),
        Op("lm_head", -1, L, d, space.vocab),
    ]
    return ops


def workload_flops(ops: list[Op], *, lm_head: bool = True) -> int:
    """GEMM FLOPs (2 per MAC) of an op list."""
    return sum(o.flops for o in ops if lm_head or o.kind != "lm_head")


def space_gemm_shapes(
    space: SearchSpace, seq_lens: tuple[int, ...] | None = None
) -> list[tuple[str, int, int, int]]:
    """Every distinct (op kind, M, K, N) any arch of `space` can issue, sorted: the rows a
    LUT for this space must hold. Deterministic (the job description of build_lut)."""
    Ls = (space.seq_len,) if seq_lens is None else tuple(seq_lens)
    hd = space.head_dim
    rows: set[tuple[str, int, int, int]] = set()
    for L in Ls:
        rows.add(("attn_score", L, hd, L))
        rows.add(("attn_context", L, L, hd))
        for d in space.d_model:
            rows.add(("lm_head", L, d, space.vocab))
            for h in space.heads:
                rows.add(("qkv", L, d, hd * h))
                rows.add(("out_proj", L, hd * h, d))
            for f in space.d_ffn:
                rows.add(("ffn1", L, d, f))
                rows.add(("ffn2", L, f, d))
    order = {k: i for i, k in enumerate(GEMM_KINDS)}
    return sorted(rows, key=lambda r: (order[r[0]], r[1], r[2], r[3]))
