"""Workload extraction: `Arch` + sequence length -> the ops of one prefill on Gemmini.

Owns the op list of DESIGN.md's workload contract (GEMMs as (M x K) @ (K x N) with a
repeat count and the context they run in, nonlinear ops as element counts for the
normalization units), the output layer the trained model computes (`OutputLayer`: a full
softmax, or the adaptive softmax's head and tail clusters), the causal mask, and the set of
distinct GEMMs of a whole search space (what a LUT must cover). It must not cost anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosearch.space import Arch, SearchSpace

# "lm_head" is the whole output layer: the full softmax's L x d x vocab GEMM, or the
# adaptive softmax's head logits, tail projections and tail logits.
GEMM_KINDS = ("qkv", "attn_score", "attn_context", "out_proj", "ffn1", "ffn2", "lm_head")
NONLINEAR_KINDS = ("softmax", "layernorm", "gelu", "residual", "mask")
BACKBONE_KINDS = GEMM_KINDS[:-1] + NONLINEAR_KINDS  # everything but the LM head

# Where a GEMM's operands come from and what it writes, as Gemmini's software runs a
# Transformer (gemmini-rocc-tests transformers/transformer.c); the gemmini-tiler regime's
# cost depends on it, the optimal regime's does not:
#   weights        A = the previous op's output, B = weights streamed from DRAM, int8 out
#   weights-int32  the same, int32 out (full_C: the output goes to a LayerNorm/residual pass)
#   activations    A and B both produced by earlier ops (attention x V), int8 out
#   softmax        activations, with the softmax fused into the GEMM (Q.K^T): a full row of
#                  scores must sit in the accumulator (tiled_matmul_auto with act=SOFTMAX)
CONTEXTS = ("weights", "weights-int32", "activations", "softmax")
GEMM_CONTEXT = {
    "qkv": "weights",
    "attn_score": "softmax",
    "attn_context": "activations",
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
    if causal not in CAUSAL:
        raise ValueError(f"causal must be one of {', '.join(CAUSAL)}, got {causal!r}")
    L = space.seq_len if seq_len is None else int(seq_len)
    out = default_output_layer(space) if output is None else output
    d, hd = arch.d_model, space.head_dim
    tri = causal == "triangular"
    ops: list[Op] = []
    for i, (h, f) in enumerate(zip(arch.heads, arch.d_ffn, strict=True)):
        a = hd * h
        ops += [
            Op("layernorm", i, count=1, elements=L * d),
            Op("qkv", i, L, d, a, count=3),
            Op("attn_score", i, L, hd, L, count=h, causal=tri),
            Op("mask", i, count=h, elements=L * L, causal=tri),
            Op("softmax", i, count=h, elements=L * L),
            Op("attn_context", i, L, L, hd, count=h, causal=tri),
            Op("out_proj", i, L, a, d),
            Op("residual", i, count=1, elements=L * d),
            Op("layernorm", i, count=1, elements=L * d),
            Op("ffn1", i, L, d, f),
            Op("gelu", i, count=1, elements=L * f),
            Op("ffn2", i, L, f, d),
            Op("residual", i, count=1, elements=L * d),
        ]
    ops.append(Op("layernorm", -1, count=1, elements=L * d))
    ops += [Op("lm_head", -1, M, K, N) for M, K, N in out.gemms(L, d)]
    return ops


def workload_flops(ops: list[Op], *, lm_head: bool = True) -> int:
    """GEMM FLOPs (2 per MAC) of an op list (the full L x L attention, as issued)."""
    return sum(o.flops for o in ops if lm_head or o.kind != "lm_head")


def space_gemm_shapes(
    space: SearchSpace,
    seq_lens: tuple[int, ...] | None = None,
    output: OutputLayer | None = None,
) -> list[tuple[str, int, int, int]]:
    """Every distinct (op kind, M, K, N) any arch of `space` can issue, sorted: the rows a
    LUT for this space must hold. Deterministic (the job description of build_lut)."""
    Ls = (space.seq_len,) if seq_lens is None else tuple(seq_lens)
    out = default_output_layer(space) if output is None else output
    hd = space.head_dim
    rows: set[tuple[str, int, int, int]] = set()
    for L in Ls:
        rows.add(("attn_score", L, hd, L))
        rows.add(("attn_context", L, L, hd))
        for d in space.d_model:
            rows.update(("lm_head", *s) for s in out.gemms(L, d))
            for h in space.heads:
                rows.add(("qkv", L, d, hd * h))
                rows.add(("out_proj", L, hd * h, d))
            for f in space.d_ffn:
                rows.add(("ffn1", L, d, f))
                rows.add(("ffn2", L, f, d))
    order = {k: i for i, k in enumerate(GEMM_KINDS)}
    return sorted(rows, key=lambda r: (order[r[0]], r[1], r[2], r[3]))
