"""Workload extraction: op list FLOPs equal the space's analytic FLOPs; the output layer
the trained model computes; shape coverage."""

import random

import pytest

from cosearch.config import PRESETS as RUN_PRESETS
from cosearch.hw.workload import (
    OutputLayer,
    arch_ops,
    default_output_layer,
    space_gemm_shapes,
    workload_flops,
)
from cosearch.space import PRESETS


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_flops_equal_space_flops(preset):
    """The backbone always; the whole model with a full softmax (the space's view)."""
    sp = PRESETS[preset]
    full = OutputLayer(sp.vocab)
    rng = random.Random(0)
    archs = [sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(50)]
    for a in archs:
        ops = arch_ops(a, sp)
        assert workload_flops(ops, lm_head=False) == sp.flops(a, lm_head=False)
        assert workload_flops(arch_ops(a, sp, output=full)) == sp.flops(a)
        for L in (64, 512):
            assert workload_flops(arch_ops(a, sp, L, output=full)) == sp.flops(a, L)


def test_adaptive_output_layer_is_the_trained_model():
    """cpu's adaptive softmax: head logits over 2,000 words + 2 clusters at width d, then
    per tail a projection to 256/4**i and its words; the same layout as the supernet's."""
    from cosearch.supernet.model import Clusters

    sp = PRESETS["cpu"]
    out = default_output_layer(sp)
    m = RUN_PRESETS["cpu"].model
    c = Clusters.make(sp.vocab, max(sp.d_model), m.cutoffs, m.tail_div)
    assert out.cutoffs == c.bounds[1:-1] and out.tail_dims == c.dims[1:]
    assert out.gemms(128, 192) == [
        (128, 192, 2002),
        (128, 192, 64),
        (128, 64, 8000),
        (128, 192, 16),
        (128, 16, 23278),
    ]
    a = sp.largest()
    head = workload_flops(arch_ops(a, sp)) - workload_flops(arch_ops(a, sp), lm_head=False)
    full = sp.flops(a) - sp.flops(a, lm_head=False)
    assert 0.1 < head / full < 0.2  # the adaptive head costs a sixth of a full softmax
    assert default_output_layer(PRESETS["paper"]).gemms(512, 768) == [(512, 768, 33278)]


def test_op_list_structure():
    sp = PRESETS["paper"]
    a = sp.largest()
    ops = arch_ops(a, sp)
    kinds = [o.kind for o in ops if o.layer == 0]
    assert kinds.count("layernorm") == 2 and kinds.count("residual") == 2
    assert kinds.count("mask") == 1
    assert {
        "qkv",
        "attn_score",
        "attn_context",
        "out_proj",
        "ffn1",
        "ffn2",
        "softmax",
        "gelu",
    } <= set(kinds)
    qkv = next(o for o in ops if o.kind == "qkv")
    assert (qkv.M, qkv.K, qkv.N, qkv.count) == (512, 768, 768, 3)
    sc = next(o for o in ops if o.kind == "attn_score")
    assert (sc.M, sc.K, sc.N, sc.count) == (512, 64, 512, 12)
    sm = next(o for o in ops if o.kind == "softmax")
    assert sm.elements * sm.count == 512 * 512 * 12
    lm = ops[-1]
    assert (lm.kind, lm.N) == ("lm_head", 33278)
    mask = next(o for o in ops if o.kind == "mask")
    assert mask.elements * mask.count == 512 * 512 * 12 and not mask.causal
    tri = arch_ops(a, sp, causal="triangular")
    assert all(o.causal for o in tri if o.kind in ("attn_score", "attn_context", "mask"))
    with pytest.raises(ValueError, match="causal"):
        arch_ops(a, sp, causal="diagonal")


def test_space_shapes_cover_every_arch():
    sp = PRESETS["cpu"]
    shapes = {s[1:] for s in space_gemm_shapes(sp)}
    rng = random.Random(1)
    for _ in range(100):
        for o in arch_ops(sp.sample(rng), sp):
            if o.is_gemm:
                assert o.shape in shapes
    rows = space_gemm_shapes(PRESETS["paper"], (128, 512))
    assert rows == space_gemm_shapes(PRESETS["paper"], (128, 512))  # deterministic
    assert len({r[1:] for r in rows if r[1] == 512}) > 100
