"""A minimal dense Transformer LM in plain JAX + optax: the yardstick for cosearch's recipe.

Deliberately independent of `cosearch.supernet` (no Flax, no masks, no adaptive softmax):
pre-LN blocks of the `cpu` largest arch's shape, separate input/output embeddings with a
full softmax, zero-initialised output table and log-unigram output bias, AdamW with the
same warmup-stable-decay schedule. It reads the same training windows
(`cosearch.data.train_batch`) and is scored on the same evaluation windows, so its
perplexity and speed can be set beside the project's (experiments/recipe, experiments/bench).
"""

from __future__ import annotations

import math
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cosearch.data import eval_batches, perplexity, train_batch


def init_params(
    key,
    vocab: int,
    d: int,
    layers: int,
    heads: int,
    d_ffn: int,
    seq_len: int,
    unigram_logp: np.ndarray,
) -> dict:
    ks = iter(jax.random.split(key, 4 + 4 * layers))
    n = partial(jax.random.normal, dtype=jnp.float32)
    p = {
        "emb": n(next(ks), (vocab, d)) * 0.02,
        "pos": n(next(ks), (seq_len, d)) * 0.02,
        "out": jnp.zeros((d, vocab)),
        "out_b": jnp.asarray(unigram_logp, jnp.float32),
        "lnf": (jnp.ones(d), jnp.zeros(d)),
        "blocks": [],
    }
    for _ in range(layers):
        p["blocks"].append(
            {
                "ln1": (jnp.ones(d), jnp.zeros(d)),
                "qkv": n(next(ks), (d, 3 * d)) * 0.02,
                "o": n(next(ks), (d, d)) * 0.02 / math.sqrt(2 * layers),
                "ln2": (jnp.ones(d), jnp.zeros(d)),
                "w1": n(next(ks), (d, d_ffn)) * 0.02,
                "w2": n(next(ks), (d_ffn, d)) * 0.02 / math.sqrt(2 * layers),
            }
        )
    return p


def _ln(x, gb):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + 1e-5) * gb[0] + gb[1]


def logits(p, x, heads: int):
    B, L = x.shape
    h = p["emb"][x] + p["pos"][:L]
    causal = jnp.tril(jnp.ones((L, L), bool))
    for b in p["blocks"]:
        y = _ln(h, b["ln1"])
        q, k, v = jnp.split(y @ b["qkv"], 3, -1)
        q, k, v = (t.reshape(B, L, heads, -1) for t in (q, k, v))
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        a = jax.nn.softmax(jnp.where(causal, s, -1e30), -1)
        h = h + jnp.einsum("bhqk,bkhd->bqhd", a, v).reshape(B, L, -1) @ b["o"]
        h = h + jax.nn.gelu(_ln(h, b["ln2"]) @ b["w1"]) @ b["w2"]
    return _ln(h, p["lnf"]) @ p["out"] + p["out_b"]


def token_nll(p, x, y, heads: int):
    lp = jax.nn.log_softmax(logits(p, x, heads), -1)
    return -jnp.take_along_axis(lp, y[..., None], -1)[..., 0]


def make_optimizer(lr: float, steps: int, warmup: int, decay_frac: float = 0.2):
    decay = max(1, round(decay_frac * steps))
    sched = optax.join_schedules(
        [
            optax.linear_schedule(0.0, lr, warmup),
            optax.constant_schedule(lr),
            optax.linear_schedule(lr, lr * 0.1, decay),
        ],
        [warmup, max(warmup, steps - decay)],
    )
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(sched, b2=0.95, weight_decay=0.01)
    )


@partial(jax.jit, static_argnames=("heads", "tx"), donate_argnums=(0, 1))
def train_step(p, opt_state, x, y, *, heads: int, tx):
    loss, g = jax.value_and_grad(lambda q: token_nll(q, x, y, heads).mean())(p)
    upd, opt_state = tx.update(g, opt_state, p)
    return optax.apply_updates(p, upd), opt_state, loss


@partial(jax.jit, static_argnames=("heads",))
def eval_step(p, x, y, w, *, heads: int):
    return (token_nll(p, x, y, heads) * w).sum(), w.sum()


def evaluate(p, tokens, heads: int, batch: int, seq_len: int, max_tokens=None) -> float:
    tot = n = 0.0
    for x, y, w in eval_batches(tokens, batch, seq_len, max_tokens):
        s, c = eval_step(p, x, y, w, heads=heads)
        tot, n = tot + float(s), n + float(c)
    return perplexity(tot, n)


def train(
    corpus,
    *,
    steps: int,
    batch: int = 16,
    seq_len: int = 128,
    d: int = 256,
    layers: int = 4,
    heads: int = 4,
    d_ffn: int = 1024,
    lr: float = 3e-3,
    warmup: int = 100,
    seed: int = 0,
    eval_every: int = 100,
    eval_tokens: int = 20_000,
    log=print,
) -> tuple[dict, list[dict]]:
    """Train on `corpus` (a cosearch.data.Corpus); returns (params, curve records)."""
    V = corpus.vocab_size
    counts = np.bincount(corpus.train, minlength=V) + 1.0
    p = init_params(
        jax.random.key(seed), V, d, layers, heads, d_ffn, seq_len, np.log(counts / counts.sum())
    )
    tx = make_optimizer(lr, steps, warmup)
    opt_state = tx.init(p)
    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        x, y = train_batch(corpus.train, batch, seq_len, seed, step)
        p, opt_state, loss = train_step(p, opt_state, x, y, heads=heads, tx=tx)
        done = step + 1
        if done % eval_every == 0 or done == steps:
            ppl = evaluate(p, corpus.valid, heads, 16, seq_len, eval_tokens)
            rec = {
                "step": done,
                "loss": float(loss),
                "eval": {"arch": ppl},
                "eval_tokens": eval_tokens,
                "seconds": time.perf_counter() - t0,
            }
            curve.append(rec)
            log(f"minimal step {done}: loss {float(loss):.3f} valid ppl {ppl:.1f}")
    return p, curve
