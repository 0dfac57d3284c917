"""KV-cache decode and the functional block: token-by-token decoding through the
preallocated cache equals the full forward at every position; the functional forward
equals the Flax model."""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np

from cosearch.space import PRESETS
from cosearch.supernet.decode import (
    cache_bytes,
    cache_shape,
    decode_all,
    decode_step,
    full_attention,
    hidden,
    init_cache,
)
from cosearch.supernet.extract import extract
from cosearch.supernet.model import arch_masks, build_model


def _dense_models(n_random: int = 2):
    """Dense subnets of a perturbed tiny supernet (largest, smallest, random ones)."""
    space = PRESETS["tiny"]
    sup = build_model(space, 47, cutoffs=(16, 40), tail_div=2)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 47, (2, space.seq_len)))
    params = sup.init(jax.random.key(0), x, arch_masks(space, space.largest()))
    params = jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params
    )
    rng = random.Random(0)
    archs = [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(n_random))]
    return [extract(space, params, a, sup) for a in dict.fromkeys(archs)], x


def test_decode_token_by_token_equals_the_full_forward():
    models, x = _dense_models()
    for model, params in models:
        full = model.apply(params, x)
        # a context longer than the tokens: the unused cache tail is masked out
        stepped = decode_all(model, params, x, context=x.shape[1] + 5)
        assert len(stepped) == len(full) == model.clusters.n
        for a, b in zip(stepped, full):
            assert a.shape == b.shape
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-5)


def test_functional_forward_equals_the_flax_model():
    models, x = _dense_models()
    for model, params in models:
        want = model.apply(params, x, method=lambda m, t: m.hidden(t))
        got = hidden(model, params, x, full_attention(model))
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=1e-5)


def test_cache_layout_and_in_place_update():
    (model, params), *_ = _dense_models(0)[0]
    B, C = 3, 11
    shape = cache_shape(model, B, C)
    assert shape == (len(model.heads), 2, B, max(model.heads), C, model.head_dim)
    assert cache_bytes(model, B, C) == int(np.prod(shape)) * 4
    cache = init_cache(model, B, C)
    blocks, cache = decode_step(model, params, cache, jnp.array([1, 2, 3]), jnp.int32(4))
    c = np.asarray(cache)
    # only position 4 was written, for every layer, k and v, and sequence
    assert np.abs(c[:, :, :, : model.heads[0], 4]).sum() > 0
    assert not np.delete(c, 4, axis=4).any()
    total = sum(np.exp(np.asarray(b)).sum(-1) for b in blocks)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)  # a distribution per sequence
