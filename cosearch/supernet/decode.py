"""Generation with a KV cache, and the functional pre-LN block it shares with int8 evaluation.

Owns `decode_step(model, params, cache, token, pos) -> (log-prob blocks, cache)`: one token
per sequence through an extracted dense subnet (`extract.extract`), attending a cache
preallocated to the context, `[layers, 2 (k, v), batch, heads, context, d_head]` (heads
padded to the widest layer), causal by position masking, so one compiled step serves every
position. It also owns `block`, the model's `Block` written as a function of its params with
two hooks, the attention (full causal, or one step against the cache) and a quantiser at
every GEMM input (`cosearch.supernet.quant`); the Flax `Block` has neither a cache nor such
hooks, and `model.py` stays the one training path. Tests pin both to the Flax model's
outputs (tests/test_decode.py). Embedding, positions and the adaptive softmax are the
model's own methods. It must not train nor change weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from cosearch.supernet.model import TransformerLM, _masked_layernorm, causal_attention, sinusoid

# A quantiser hook: (site name, activation) -> activation (identity in float).
ActHook = Callable[[str, jnp.ndarray], jnp.ndarray]
# An attention hook: (q, k, v) of shape (B, L, H, Dh) -> context (B, L, H, Dh).
Attend = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _identity(name: str, x: jnp.ndarray) -> jnp.ndarray:
    return x


def _ln(p: dict, x):
    return _masked_layernorm(x, p["scale"], p["bias"], None)


def block(p: dict, x, attend: Attend, aq: ActHook = _identity, i: int = 0):
    """One dense pre-LN block (`model.Block` without masks or dropout) on x (B, L, D).
    `aq(site, a)` is applied to every GEMM input (site names `l{i}.<input>`)."""
    s = f"l{i}."
    y = aq(s + "ln1", _ln(p["ln1"], x))
    q, k, v = (jnp.einsum("bld,dhk->blhk", y, p[n]) + p[f"b{n}"] for n in ("wq", "wk", "wv"))
    ctx = attend(aq(s + "q", q), aq(s + "k", k), aq(s + "v", v))
    a = jnp.einsum("blhk,hkd->bld", aq(s + "ctx", ctx), p["wo"]) + p["bo"]
    x = x + a
    y = aq(s + "ln2", _ln(p["ln2"], x))
    u = nn.gelu(y @ p["w1"] + p["b1"])
    return x + aq(s + "gelu", u) @ p["w2"] + p["b2"]


def embed(model: TransformerLM, params: dict, tokens, positions, n_pos: int):
    """`TransformerLM.hidden`'s input: the scaled token embedding plus the sinusoid at
    `positions` (ints broadcasting against `tokens`, all < the static `n_pos`)."""
    e = model.apply(params, tokens, method=lambda m, t: m.embedding.embed(t))
    table = sinusoid(n_pos, model.d_model, model.d_model)
    return e * jnp.sqrt(float(model.d_model)) + table[positions]


def hidden(model: TransformerLM, params: dict, tokens, attend: Attend, aq: ActHook = _identity):
    """`TransformerLM.hidden` of a dense model on (B, L) tokens, through `block` with the
    given attention and quantiser hooks; the last site, `out`, is the output layer's input."""
    p = params["params"]
    L = tokens.shape[1]
    x = embed(model, params, tokens, jnp.arange(L)[None, :], L)
    for i in range(len(model.heads)):
        x = block(p[f"block{i}"], x, attend, aq, i)
    return aq("out", _ln(p["ln_f"], x))


def full_attention(model: TransformerLM) -> Attend:
    """The model's own causal attention (dense or query-chunked, as it was built)."""
    return partial(causal_attention, impl=model.attention)


# ----- KV-cache decode ----------------------------------------------------------------------
def cache_shape(model: TransformerLM, batch: int, context: int) -> tuple[int, ...]:
    """[layers, 2 (k, v), batch, heads (widest layer), context, d_head]."""
    return (len(model.heads), 2, batch, max(model.heads), context, model.head_dim)


def init_cache(model: TransformerLM, batch: int, context: int, dtype=jnp.float32):
    """A zeroed cache for `batch` sequences of up to `context` tokens."""
    return jnp.zeros(cache_shape(model, batch, context), dtype)


def cache_bytes(model: TransformerLM, batch: int, context: int, itemsize: int = 4) -> int:
    """Bytes of the preallocated cache (what `init_cache` allocates)."""
    return math.prod(cache_shape(model, batch, context)) * itemsize


def _cached_attention(layer: int, pos, updated: dict) -> Attend:
    """Attention of one new token per sequence at `pos` against the cache of `layer`: its
    k and v are written at `pos` first (into `updated['cache']`), and positions after
    `pos` are masked, so the step's shapes do not depend on the position."""

    def attend(q, k, v):
        h = q.shape[2]
        c = updated["cache"]
        for j, new in enumerate((k, v)):  # (B, 1, h, Dh) -> (1, 1, B, h, 1, Dh)
            upd = jnp.moveaxis(new, 1, 2)[None, None].astype(c.dtype)
            c = jax.lax.dynamic_update_slice(c, upd, (layer, j, 0, 0, pos, 0))
        updated["cache"] = c
        keys, values = c[layer, 0, :, :h], c[layer, 1, :, :h]  # (B, h, C, Dh)
        s = jnp.einsum("bhd,bhcd->bhc", q[:, 0], keys) / math.sqrt(q.shape[-1])
        s = jnp.where(jnp.arange(c.shape[4]) <= pos, s, jnp.finfo(s.dtype).min)
        ctx = jnp.einsum("bhc,bhcd->bhd", jax.nn.softmax(s, -1), values)
        return ctx[:, None]

    return attend


@partial(jax.jit, static_argnames=("model",), donate_argnames=("cache",))
def decode_step(model: TransformerLM, params: dict, cache, token, pos):
    """One generation step of the dense `model`: `token` (B,) ints at position `pos` (a
    scalar, the same for the batch) -> (per-cluster log-probabilities of the next word,
    each (B, cluster size), and the cache with this position's keys and values). The
    cache is donated: updated in place, never copied."""
    p = params["params"]
    context = cache.shape[4]
    x = embed(model, params, token[:, None], jnp.full((1, 1), pos), context)
    updated = {"cache": cache}
    for i in range(len(model.heads)):
        x = block(p[f"block{i}"], x, _cached_attention(i, pos, updated), i=i)
    h = _ln(p["ln_f"], x[:, 0])
    blocks = model.apply(params, h, method=lambda m, hh: m.embedding.log_prob_blocks(hh))
    return blocks, updated["cache"]


def decode_all(model: TransformerLM, params: dict, tokens, context: int | None = None):
    """Feed (B, L) tokens one position at a time through `decode_step`; returns the
    per-cluster log-probabilities at every position, each (B, L, cluster size): what the
    full forward `model.apply(params, tokens)` gives (tests/test_decode.py)."""
    B, L = tokens.shape
    cache = init_cache(model, B, context or L)
    outs = []
    for t in range(L):
        blocks, cache = decode_step(model, params, cache, tokens[:, t], jnp.int32(t))
        outs.append(blocks)
    return [jnp.stack([o[j] for o in outs], 1) for j in range(len(outs[0]))]
