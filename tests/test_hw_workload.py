"""Workload extraction: op list FLOPs equal the space's analytic FLOPs; shape coverage."""

import random

import pytest

from cosearch.hw.workload import arch_ops, space_gemm_shapes, workload_flops
from cosearch.space import PRESETS


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_flops_equal_space_flops(preset):
    sp = PRESETS[preset]
    rng = random.Random(0)
    archs = [sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(50)]
    for a in archs:
        ops = arch_ops(a, sp)
        assert workload_flops(ops) == sp.flops(a)
        assert workload_flops(ops, lm_head=False) == sp.flops(a, lm_head=False)
        for L in (64, 512):
            assert workload_flops(arch_ops(a, sp, L)) == sp.flops(a, L)


def test_op_list_structure():
    sp = PRESETS["paper"]
    a = sp.largest()
    ops = arch_ops(a, sp)
    kinds = [o.kind for o in ops if o.layer == 0]
    assert kinds.count("layernorm") == 2 and kinds.count("residual") == 2
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
