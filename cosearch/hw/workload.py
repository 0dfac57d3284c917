"""Workload extraction: `Arch` + a pass (prefill or decode step) -> its ops on Gemmini.

Owns the op list of DESIGN.md's workload contract (GEMMs as (M x K) @ (K x N) with a
repeat count and the context they run in, nonlinear ops as element counts for the
normalization units, KV-cache writes as DRAM bytes), the output layer the trained model
computes (`OutputLayer`: a full softmax, or the adaptive softmax's head and tail clusters),
the causal mask, the passes of a serving scenario (`cosearch.scenario.Phase`: a prefill of
L tokens, or a decode step whose attention reads the KV cache), and the set of distinct
GEMMs of a whole search space (what a LUT must cover). It must not cost anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosearch.scenario import Phase, Scenario
from cosearch.space import Arch, SearchSpace

# "lm_head" is the whole output layer: the full softmax's L x d x vocab GEMM, or the
# adaptive softmax's head logits, tail projections and tail logits. "kv_score" and
# "kv_context" are a decode step's attention over the KV cache: per sequence and head a
# 1 x hd x c GEMV against the cached keys and a 1 x c x hd one against the cached values.
GEMM_KINDS = (
    "qkv",
    "attn_score",
    "attn_context",
    "kv_score",
    "kv_context",
    "out_proj",
    "ffn1",
    "ffn2",
    "lm_head",
)
NONLINEAR_KINDS = ("softmax", "layernorm", "gelu", "residual", "mask")
# DRAM traffic that is no GEMM operand: the K and V rows a pass appends to the KV cache
# (`elements` = bytes), written back to DRAM for the steps that follow.
MEMORY_KINDS = ("kv_write",)
BACKBONE_KINDS = (  # everything but the LM head
    tuple(k for k in GEMM_KINDS if k != "lm_head") + NONLINEAR_KINDS + MEMORY_KINDS
)

# Where a GEMM's operands come from and what it writes, as Gemmini's software runs a
# Transformer (gemmini-rocc-tests transformers/transformer.c); the gemmini-tiler regime's
# cost depends on it, the optimal regime's does not:
#   weights        A = the previous op's output, B = weights streamed from DRAM, int8 out
#   weights-int32  the same, int32 out (full_C: the output goes to a LayerNorm/residual pass)
#   activations    A and B both produced by earlier ops (attention x V), int8 out
#   softmax        activations, with the softmax fused into the GEMM (Q.K^T): a full row of
#                  scores must sit in the accumulator (tiled_matmul_auto with act=SOFTMAX)
#   kv-softmax     a decode step's q.K^T: A = the new query, B = the cached keys streamed
#                  from DRAM (the cache outlives the SoC cache between steps), softmax fused
#   kv             a decode step's p.V: B = the cached values streamed from DRAM, int8 out
CONTEXTS = ("weights", "weights-int32", "activations", "softmax", "kv-softmax", "kv")
GEMM_CONTEXT = {
    "qkv": "weights",
    "attn_score": "softmax",
    "attn_context": "activations",
    "kv_score": "kv-softmax",
    "kv_context": "kv",
    "out_proj": "weights-int32",
    "ffn1": "weights",
    "ffn2": "weights-int32",
    "lm_head": "weights",
}
CAUSAL = ("mask", "triangular")


@dataclass(frozen=True)
class Op:
    """One op kind of one layer. GEMMs: (M x K) @ (K x N) repeated `count` times
    (Q/K/V: 3, per-head attention: h). Nonlinear ops: `elements` values per instance,
    repeated `count` times, on the normalization units. `causal`: a GEMM of the attention
    that the software may restrict to the lower triangle (`CAUSAL` 'triangular')."""

    kind: str
    layer: int  # -1 for ops outside the layers (LM head, final LayerNorm)
    M: int = 0
    K: int = 0
    N: int = 0
    count: int = 1
    elements: int = 0
    causal: bool = False

    @property
    def is_gemm(self) -> bool:
        return self.kind in GEMM_KINDS

    @property
    def context(self) -> str:
        return GEMM_CONTEXT[self.kind]

    @property
    def macs(self) -> int:
        return self.M * self.K * self.N * self.count if self.is_gemm else 0

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.M, self.K, self.N)


@dataclass(frozen=True)
class OutputLayer:
    """The output layer an inference computes. `cutoffs=()`: a full softmax, one
    L x d x vocab GEMM (the `paper` preset). Otherwise the adaptive softmax of
    cosearch.supernet.model (Grave et al. 2017): head logits over the first cutoff's words
    plus one logit per tail cluster (L x d x (c0 + tails)), and per tail cluster i a
    projection to `tail_dims[i]` (fixed by the supernet's width) and its logits
    (L x d x dim_i, L x dim_i x words_i).

    Every tail is costed at every position: a prefill returns the full normalised
    distribution over all words at each position (what sampling needs, and what
    `cosearch.evaluate` computes); training evaluates a tail only where the target falls in
    it, which no inference can know in advance."""

    vocab: int
    cutoffs: tuple[int, ...] = ()
    tail_dims: tuple[int, ...] = ()

    @classmethod
    def make(
        cls, space: SearchSpace, cutoffs: tuple[int, ...] = (), tail_div: int = 4
    ) -> OutputLayer:
        """The layout of `cosearch.supernet.model.Clusters.make` (tested equal)."""
        cut = tuple(c for c in cutoffs if 0 < c < space.vocab)
        d_max = max(space.d_model)
        dims = tuple(max(1, d_max // tail_div**i) for i in range(1, len(cut) + 1))
        return cls(space.vocab, cut, dims)

    @property
    def adaptive(self) -> bool:
        return bool(self.cutoffs)

    def gemms(self, L: int, d: int) -> list[tuple[int, int, int]]:
        """The output layer's GEMMs (M, K, N) at width d."""
        if not self.adaptive:
            return [(L, d, self.vocab)]
        bounds = (*self.cutoffs, self.vocab)
        out = [(L, d, self.cutoffs[0] + len(self.tail_dims))]
        for i, dim in enumerate(self.tail_dims):
            out += [(L, d, dim), (L, dim, bounds[i + 1] - bounds[i])]
        return out


def model_output_layer(space: SearchSpace, model) -> OutputLayer:
    """The output layer of a `cosearch.config.ModelConfig` on `space`."""
    if model.output == "full":
        return OutputLayer(space.vocab)
    return OutputLayer.make(space, model.cutoffs, model.tail_div)


def default_output_layer(space: SearchSpace) -> OutputLayer:
    """The output layer of the run preset of the same name (`cosearch.config.PRESETS`:
    adaptive for `cpu` and `tiny`, full for `paper`); a full softmax for other spaces."""
    from cosearch.config import PRESETS

    cfg = PRESETS.get(space.name)
    return OutputLayer(space.vocab) if cfg is None else model_output_layer(space, cfg.model)


def arch_ops(
    arch: Arch,
    space: SearchSpace,
    seq_len: int | None = None,
    *,
    output: OutputLayer | None = None,
    causal: str = "mask",
) -> list[Op]:
    """All ops of one prefill of `arch` over `seq_len` tokens (default: the space's).
    `output`: the output layer (default: `default_output_layer`); `causal`: 'mask' (the
    full L x L scores plus an additive mask) or 'triangular' (the software skips the
    blocks above the diagonal and masks only the diagonal blocks)."""
    L = space.seq_len if seq_len is None else int(seq_len)
    return phase_ops(arch, space, Phase("prefill", 1, L, L), output=output, causal=causal)


def phase_ops(
    arch: Arch,
    space: SearchSpace,
    phase: Phase,
    *,
    output: OutputLayer | None = None,
    causal: str = "mask",
) -> list[Op]:
    """All ops of one pass of `arch` (`cosearch.scenario.Phase`).

    Prefill of L tokens x batch b: weight GEMMs with M = b L, per sequence and head the
    L x L attention (`count` b h), the LM head at every position or (`logits='last'`) at
    each sequence's last. Decode step at context c: weight GEMMs with M = b (the weights
    read once per step for the whole batch), per sequence and head the GEMVs q.K^T
    (1 x hd x c) and p.V (1 x c x hd) against the KV cache in DRAM (`kv_score`,
    `kv_context`: together they read 2 c hd bytes per head per sequence, the cache's
    DRAM reads), no mask (every cached key is in the past), the LM head for the new token.
    A pass that keeps a cache (`Phase.writes_cache`) appends its K and V rows: one
    `kv_write` op per layer of 2 x tokens x b x d_kv x kv_bytes bytes."""
    if causal not in CAUSAL:
        raise ValueError(f"causal must be one of {', '.join(CAUSAL)}, got {causal!r}")
    out = default_output_layer(space) if output is None else output
    d, hd = arch.d_model, space.head_dim
    tri = causal == "triangular"
    b, R, c = phase.batch, phase.rows, phase.context
    decode = phase.kind == "decode"
    ops: list[Op] = []
    for i, (h, f) in enumerate(zip(arch.heads, arch.d_ffn, strict=True)):
        a = hd * h
        ops += [Op("layernorm", i, count=1, elements=R * d), Op("qkv", i, R, d, a, count=3)]
        if decode:
            ops += [
                Op("kv_score", i, 1, hd, c, count=b * h),
                Op("softmax", i, count=b * h, elements=c),
                Op("kv_context", i, 1, c, hd, count=b * h),
            ]
        else:
            L = phase.tokens
            ops += [
                Op("attn_score", i, L, hd, L, count=b * h, causal=tri),
                Op("mask", i, count=b * h, elements=L * L, causal=tri),
                Op("softmax", i, count=b * h, elements=L * L),
                Op("attn_context", i, L, L, hd, count=b * h, causal=tri),
            ]
        if phase.writes_cache:
            ops.append(Op("kv_write", i, count=1, elements=2 * R * a * phase.kv_bytes))
        ops += [
            Op("out_proj", i, R, a, d),
            Op("residual", i, count=1, elements=R * d),
            Op("layernorm", i, count=1, elements=R * d),
            Op("ffn1", i, R, d, f),
            Op("gelu", i, count=1, elements=R * f),
            Op("ffn2", i, R, f, d),
            Op("residual", i, count=1, elements=R * d),
        ]
    # the final LayerNorm feeds the LM head only: its rows are the logit rows
    ops.append(Op("layernorm", -1, count=1, elements=phase.logit_rows * d))
    ops += [Op("lm_head", -1, M, K, N) for M, K, N in out.gemms(phase.logit_rows, d)]
    return ops


def scenario_ops(
    arch: Arch,
    space: SearchSpace,
    scenario: Scenario,
    *,
    output: OutputLayer | None = None,
    causal: str = "mask",
) -> list[list[Op]]:
    """The ops of every pass of one costed unit of `scenario`, one list per phase."""
    return [
        phase_ops(arch, space, p, output=output, causal=causal)
        for p in scenario.phases(space.seq_len)
    ]


def kv_cache_bytes(arch: Arch, space: SearchSpace, phase: Phase) -> dict[str, int]:
    """DRAM bytes of the KV cache one pass moves: a decode step reads 2 x c x d_kv x b x
    kv_bytes per layer (inside its `kv_score`/`kv_context` GEMVs) and every caching pass
    writes 2 x tokens x d_kv x b x kv_bytes (`kv_write`); plus the weight bytes read once
    per pass (int8), for comparison."""
    d_kv = [space.head_dim * h for h in arch.heads]
    rd = sum(2 * phase.context * a * phase.batch * phase.kv_bytes for a in d_kv)
    wr = sum(2 * phase.rows * a * phase.kv_bytes for a in d_kv) if phase.writes_cache else 0
    weights = sum(
        4 * arch.d_model * a + 2 * arch.d_model * f for a, f in zip(d_kv, arch.d_ffn, strict=True)
    )
    return {"kv_read": rd if phase.kind == "decode" else 0, "kv_write": wr, "weights": weights}


def workload_flops(ops: list[Op], *, lm_head: bool = True) -> int:
    """GEMM FLOPs (2 per MAC) of an op list (the full L x L attention, as issued)."""
    return sum(o.flops for o in ops if lm_head or o.kind != "lm_head")


def space_gemm_shapes(
    space: SearchSpace,
    seq_lens: tuple[int, ...] | None = None,
    output: OutputLayer | None = None,
    scenario: Scenario | None = None,
) -> list[tuple[str, int, int, int]]:
    """Every distinct (op kind, M, K, N) any arch of `space` can issue, sorted: the rows a
    LUT for this space must hold. Deterministic (the job description of build_lut).
    `scenario`: the passes of that scenario (`Scenario.phases`) instead of prefills at
    `seq_lens` (default: the space's length)."""
    if scenario is not None:
        phases = scenario.phases(space.seq_len)
    else:
        Ls = (space.seq_len,) if seq_lens is None else tuple(seq_lens)
        phases = [Phase("prefill", 1, L, L) for L in Ls]
    rows: set[tuple[str, int, int, int]] = set()
    for p in phases:
        rows.update(phase_gemm_shapes(space, p, output))
    order = {k: i for i, k in enumerate(GEMM_KINDS)}
    return sorted(rows, key=lambda r: (order[r[0]], r[1], r[2], r[3]))


def phase_gemm_shapes(
    space: SearchSpace, phase: Phase, output: OutputLayer | None = None
) -> set[tuple[str, int, int, int]]:
    """Every distinct (op kind, M, K, N) of one pass over all archs of `space`."""
    out = default_output_layer(space) if output is None else output
    hd, R, c = space.head_dim, phase.rows, phase.context
    rows: set[tuple[str, int, int, int]] = set()
    if phase.kind == "decode":
        rows.add(("kv_score", 1, hd, c))
        rows.add(("kv_context", 1, c, hd))
    else:
        L = phase.tokens
        rows.add(("attn_score", L, hd, L))
        rows.add(("attn_context", L, L, hd))
    for d in space.d_model:
        rows.update(("lm_head", *s) for s in out.gemms(phase.logit_rows, d))
        for h in space.heads:
            rows.add(("qkv", R, d, hd * h))
            rows.add(("out_proj", R, hd * h, d))
        for f in space.d_ffn:
            rows.add(("ffn1", R, d, f))
            rows.add(("ffn2", R, f, d))
    return rows
