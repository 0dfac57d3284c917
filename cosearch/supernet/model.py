"""The elastic causal Transformer LM (Flax linen) and its subnet masks.

One module, `TransformerLM`, serves both roles: built at the largest arch of a space and
called with `masks` it is the weight-sharing supernet (a subnet is data, so one compiled
function serves every subnet); built at a subnet's arch and called without masks it is the
dense standalone model that `extract` fills with sliced weights. Masked LayerNorm and
attention therefore behave exactly as the standalone model does.

The word embedding is adaptive (Baevski & Auli): frequency clusters with shrinking widths,
and the output layer is an exact adaptive softmax over the full vocabulary (word-level
probabilities) at a fraction of a full softmax's cost. `cutoffs=()` gives a plain full
softmax. Output tables are the input tables (`tied=True`, the first recipe) or their own,
zero-initialised, so that with log-unigram output biases (`unigram_biases`) the untrained
model predicts the unigram distribution instead of "next word = this word"
(experiments/recipe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cosearch.config import RunConfig, check
from cosearch.space import Arch, SearchSpace

LN_EPS = 1e-5


# ----- masks: a subnet as data ---------------------------------------------------------------
def arch_masks(space: SearchSpace, arch: Arch) -> dict[str, np.ndarray]:
    """Float masks selecting `arch` inside the largest arch of `space`: the first n layers,
    the first d hidden dims, the first h_i heads and first f_i FFN units of layer i."""
    space.validate(arch)
    big = space.largest()
    layer = np.zeros(big.n_layers, np.float32)
    layer[: arch.n_layers] = 1
    hidden = np.zeros(big.d_model, np.float32)
    hidden[: arch.d_model] = 1
    heads = np.zeros((big.n_layers, space.max_heads), np.float32)
    ffn = np.zeros((big.n_layers, max(space.d_ffn)), np.float32)
    for i, (h, f) in enumerate(zip(arch.heads, arch.d_ffn)):
        heads[i, :h] = 1
        ffn[i, :f] = 1
    return {"layer": layer, "hidden": hidden, "heads": heads, "ffn": ffn}


def stack_masks(masks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([m[k] for m in masks]) for k in masks[0]}


# ----- building blocks ---------------------------------------------------------------------
def _masked_layernorm(x, scale, bias, hmask):
    """LayerNorm over the active hidden dims only (hmask None: all dims).

    With a mask, `x` must be zero on the inactive dims, as the model keeps its residual
    stream. The mask is folded into the (D,) scale and bias rather than applied to (B, L, D)
    activations: the same values, and the masked step costs what the dense one does
    (activation masks here made the whole supernet step ~30 % slower on CPU,
    experiments/bench)."""
    if hmask is None:
        mean = x.mean(-1, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(-1, keepdims=True)
        return xc * jax.lax.rsqrt(var + LN_EPS) * scale + bias
    n = hmask.sum()
    mean = x.sum(-1, keepdims=True) / n
    xc = x - mean
    var = (xc * xc * hmask).sum(-1, keepdims=True) / n
    return xc * jax.lax.rsqrt(var + LN_EPS) * (scale * hmask) + bias * hmask


class LayerNorm(nn.Module):
    dim: int

    @nn.compact
    def __call__(self, x, hmask=None):
        scale = self.param("scale", nn.initializers.ones, (self.dim,))
        bias = self.param("bias", nn.initializers.zeros, (self.dim,))
        return _masked_layernorm(x, scale, bias, hmask)


def _matmul(a, b, dtype: str = "float32"):
    """a @ b with inputs in `dtype` (bfloat16: float32 accumulation and result, so what
    follows stays float32); float32: exactly `a @ b`."""
    if dtype == "float32":
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _einsum(spec: str, a, b, dtype: str = "float32"):
    """`jnp.einsum(spec, a, b)` with inputs in `dtype`, as `_matmul`."""
    if dtype == "float32":
        return jnp.einsum(spec, a, b)
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def sinusoid(length: int, dim: int, d_active) -> jnp.ndarray:
    """Sinusoidal positions for a model of width `d_active` laid into `dim` columns
    (columns >= d_active get garbage that the hidden mask zeroes)."""
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    i = jnp.arange(dim // 2, dtype=jnp.float32)
    inv = jnp.exp(-math.log(10000.0) * 2 * i / d_active)
    ang = pos * inv[None, :]
    return jnp.stack([jnp.sin(ang), jnp.cos(ang)], -1).reshape(length, dim)


def causal_attention(q, k, v, *, impl: str = "dense", chunk: int = 256, dtype: str = "float32"):
    """softmax(q k^T / sqrt(d_head) + causal) v for (B, L, H, Dh) arrays.

    `dense` materialises the (B, H, L, L) scores; `chunked` processes queries in blocks of
    `chunk` so that only (B, H, chunk, L) scores live at once. Same result either way.
    `dtype`: the two matmuls' input dtype (scores and softmax stay float32)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    L = q.shape[1]
    if impl == "dense" or L <= chunk:
        s = _einsum("bqhd,bkhd->bhqk", q, k, dtype) * scale
        causal = jnp.tril(jnp.ones((L, L), bool))
        s = jnp.where(causal, s, jnp.finfo(s.dtype).min)
        p = jax.nn.softmax(s, axis=-1)
        return _einsum("bhqk,bkhd->bqhd", p, v, dtype)
    if impl != "chunked":
        raise ValueError(f"unknown attention impl '{impl}'; known: dense, chunked")
    n = -(-L // chunk)
    pad = n * chunk - L
    qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(q.shape[0], n, chunk, *q.shape[2:])
    kpos = jnp.arange(L)

    def one(args):
        qc, start = args
        s = _einsum("bqhd,bkhd->bhqk", qc, k, dtype) * scale
        qpos = start + jnp.arange(chunk)
        s = jnp.where(kpos[None, :] <= qpos[:, None], s, jnp.finfo(s.dtype).min)
        return _einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v, dtype)

    out = jax.lax.map(one, (jnp.moveaxis(qp, 1, 0), jnp.arange(n) * chunk))
    out = jnp.moveaxis(out, 0, 1).reshape(q.shape[0], n * chunk, *q.shape[2:])
    return out[:, :L]


class Block(nn.Module):
    d_model: int
    heads: int
    head_dim: int
    d_ffn: int
    dropout: float
    attention: str = "dense"
    compute_dtype: str = "float32"  # matmul inputs (ModelConfig.compute_dtype)

    @nn.compact
    def __call__(self, x, m, train: bool):
        """m: None (dense) or dict(hidden (D,), heads (H,), ffn (F,)) for this layer."""
        hm = None if m is None else m["hidden"]
        init = nn.initializers.normal(0.02)
        H, Dh, D, cd = self.heads, self.head_dim, self.d_model, self.compute_dtype
        drop = nn.Dropout(self.dropout, deterministic=not train)

        y = LayerNorm(D, name="ln1")(x, hm)
        q, k, v = (
            _einsum("bld,dhk->blhk", y, self.param(n, init, (D, H, Dh)), cd)
            + self.param(f"b{n}", nn.initializers.zeros, (H, Dh))
            for n in ("wq", "wk", "wv")
        )
        ctx = causal_attention(q, k, v, impl=self.attention, dtype=cd)
        if m is not None:
            ctx = ctx * m["heads"][None, None, :, None]
        wo = self.param("wo", nn.initializers.normal(0.02 / math.sqrt(2)), (H, Dh, D))
        a = _einsum("blhk,hkd->bld", ctx, wo, cd) + self.param("bo", nn.initializers.zeros, (D,))
        if hm is not None:
            a = a * hm
        x = x + drop(a)

        y = LayerNorm(D, name="ln2")(x, hm)
        u = _matmul(y, self.param("w1", init, (D, self.d_ffn)), cd) + self.param(
            "b1", nn.initializers.zeros, (self.d_ffn,)
        )
        u = nn.gelu(u)
        if m is not None:
            u = u * m["ffn"]
        w2 = self.param("w2", nn.initializers.normal(0.02 / math.sqrt(2)), (self.d_ffn, D))
        f = _matmul(u, w2, cd)
        f = f + self.param("b2", nn.initializers.zeros, (D,))
        if hm is not None:
            f = f * hm
        return x + drop(f)


@dataclass(frozen=True)
class Clusters:
    """Adaptive embedding layout: word ranges and their embedding widths."""

    bounds: tuple[int, ...]  # 0 = b0 < b1 < ... < bK = vocab
    dims: tuple[int, ...]  # width of each cluster's embedding (cluster 0: d_model)

    @classmethod
    def make(cls, vocab: int, d_max: int, cutoffs: tuple[int, ...], tail_div: int) -> Clusters:
        cut = tuple(c for c in cutoffs if 0 < c < vocab)
        bounds = (0, *cut, vocab)
        dims = tuple(max(1, d_max // tail_div**i) for i in range(len(bounds) - 1))
        return cls(bounds, dims)

    @property
    def n(self) -> int:
        return len(self.dims)


class AdaptiveEmbedding(nn.Module):
    """Adaptive input embedding and adaptive softmax output, tied or separate."""

    vocab: int
    d_model: int
    clusters: Clusters
    tied: bool = True
    compute_dtype: str = "float32"  # output matmuls' inputs; logits and softmax in float32

    def setup(self):
        # std 1/sqrt(d): scaled by sqrt(d) at the input, a token embedding has unit variance
        # per dim like the sinusoidal positions (with 0.02, positions drowned the token
        # identity and training sat on a unigram plateau); tied logits start at unit scale
        init = nn.initializers.normal(1 / math.sqrt(self.d_model))
        c = self.clusters
        self.tables = [
            self.param(f"emb{i}", init, (c.bounds[i + 1] - c.bounds[i], c.dims[i]))
            for i in range(c.n)
        ]
        # cluster 0 lives in the model width; tail clusters project up to it
        self.projs = [None] + [
            self.param(
                f"proj{i}",
                nn.initializers.normal(1 / math.sqrt(c.dims[i])),
                (c.dims[i], self.d_model),
            )
            for i in range(1, c.n)
        ]
        if self.tied:
            self.out_tables, self.out_projs = self.tables, self.projs
        else:  # zero output tables: the first logits are the biases alone
            zeros = nn.initializers.zeros
            self.out_tables = [
                self.param(f"out{i}", zeros, (c.bounds[i + 1] - c.bounds[i], c.dims[i]))
                for i in range(c.n)
            ]
            self.out_projs = [None] + [
                self.param(
                    f"oproj{i}",
                    nn.initializers.normal(1 / math.sqrt(self.d_model)),
                    (c.dims[i], self.d_model),
                )
                for i in range(1, c.n)
            ]
        self.biases = [
            self.param(f"bias{i}", nn.initializers.zeros, (c.bounds[i + 1] - c.bounds[i],))
            for i in range(c.n)
        ]
        if c.n > 1:
            w_init = init if self.tied else nn.initializers.zeros
            self.cluster_w = self.param("cluster_w", w_init, (self.d_model, c.n - 1))
            self.cluster_b = self.param("cluster_b", nn.initializers.zeros, (c.n - 1,))

    def embed(self, tokens):
        c = self.clusters
        out = jnp.zeros((*tokens.shape, self.d_model), jnp.float32)
        for i in range(c.n):
            lo, hi = c.bounds[i], c.bounds[i + 1]
            inside = (tokens >= lo) & (tokens < hi)
            e = self.tables[i][jnp.clip(tokens - lo, 0, hi - lo - 1)]
            if self.projs[i] is not None:
                e = e @ self.projs[i]
            out = out + jnp.where(inside[..., None], e, 0.0)
        return out

    def log_prob_blocks(self, h) -> list[jnp.ndarray]:
        """Per-cluster log-probabilities; their concatenation is log p(word) for all words."""
        c, cd = self.clusters, self.compute_dtype
        head = _matmul(h, self.out_tables[0].T, cd) + self.biases[0]
        if c.n == 1:
            return [jax.nn.log_softmax(head, -1)]
        head = jnp.concatenate([head, _matmul(h, self.cluster_w, cd) + self.cluster_b], -1)
        head_lp = jax.nn.log_softmax(head, -1)
        n0 = c.bounds[1]
        blocks = [head_lp[..., :n0]]
        for i in range(1, c.n):
            z = _matmul(_matmul(h, self.out_projs[i].T, cd), self.out_tables[i].T, cd)
            z = z + self.biases[i]
            blocks.append(jax.nn.log_softmax(z, -1) + head_lp[..., n0 + i - 1 : n0 + i])
        return blocks

    def gathered(self, h, targets, caps: tuple[int, ...]) -> dict:
        """Training-time outputs: the full head distribution at every position and, for
        each tail cluster i, its conditional distribution only at (up to caps[i-1])
        positions whose target lies in that cluster, as PyTorch's adaptive softmax does.
        The NLL this gives is exact; positions past a cap are dropped (counted)."""
        c, cd = self.clusters, self.compute_dtype
        B, L, D = h.shape
        hf = h.reshape(B * L, D)
        tf = targets.reshape(B * L)
        head = _matmul(hf, self.out_tables[0].T, cd) + self.biases[0]
        if c.n > 1:
            head = jnp.concatenate([head, _matmul(hf, self.cluster_w, cd) + self.cluster_b], -1)
        out = {"head": jax.nn.log_softmax(head, -1), "tails": []}
        for i in range(1, c.n):
            lo, hi = c.bounds[i], c.bounds[i + 1]
            inside = (tf >= lo) & (tf < hi)
            (rows,) = jnp.nonzero(inside, size=caps[i - 1], fill_value=0)
            valid = jnp.arange(caps[i - 1]) < inside.sum()
            z = _matmul(_matmul(hf[rows], self.out_projs[i].T, cd), self.out_tables[i].T, cd)
            z = z + self.biases[i]
            out["tails"].append(
                {
                    "lp": jax.nn.log_softmax(z, -1),
                    "rows": rows,
                    "valid": valid,
                    "word": jnp.clip(tf[rows] - lo, 0, hi - lo - 1),
                    "overflow": jnp.maximum(inside.sum() - caps[i - 1], 0),
                }
            )
        return out


class TransformerLM(nn.Module):
    """Pre-LN causal Transformer LM. With `masks`, a supernet; without, a dense model."""

    vocab: int
    d_model: int
    heads: tuple[int, ...]
    d_ffn: tuple[int, ...]
    head_dim: int
    clusters: Clusters
    dropout: float = 0.0
    attention: str = "dense"
    tied: bool = True
    compute_dtype: str = "float32"  # matmul inputs; parameters and the loss stay float32

    def setup(self):
        cd = self.compute_dtype
        self.embedding = AdaptiveEmbedding(self.vocab, self.d_model, self.clusters, self.tied, cd)
        block = partial(Block, head_dim=self.head_dim, dropout=self.dropout, compute_dtype=cd)
        self.blocks = [
            block(self.d_model, h, d_ffn=f, attention=self.attention, name=f"block{i}")
            for i, (h, f) in enumerate(zip(self.heads, self.d_ffn))
        ]
        self.ln_f = LayerNorm(self.d_model)
        self.drop = nn.Dropout(self.dropout)

    def hidden(self, tokens, masks=None, train: bool = False):
        hm = None if masks is None else masks["hidden"]
        d_active = self.d_model if hm is None else hm.sum()
        x = self.embedding.embed(tokens) * jnp.sqrt(d_active) + sinusoid(
            tokens.shape[1], self.d_model, d_active
        )
        if hm is not None:
            x = x * hm
        x = self.drop(x, deterministic=not train)
        for i, blk in enumerate(self.blocks):
            if masks is None:
                x = blk(x, None, train)
            else:
                m = {"hidden": hm, "heads": masks["heads"][i], "ffn": masks["ffn"][i]}
                x = x + masks["layer"][i] * (blk(x, m, train) - x)
        return self.ln_f(x, hm)

    def __call__(self, tokens, masks=None, train: bool = False) -> list[jnp.ndarray]:
        """Per-cluster log-probabilities of the next word at every position."""
        return self.embedding.log_prob_blocks(self.hidden(tokens, masks, train))

    def train_outputs(self, tokens, targets, caps, masks=None, train: bool = True) -> dict:
        """Head distribution everywhere + tail conditionals at their targets' positions."""
        return self.embedding.gathered(self.hidden(tokens, masks, train), targets, caps)


# ----- losses on per-cluster log-probabilities -----------------------------------------------
def token_nll(blocks: list[jnp.ndarray], targets, bounds: tuple[int, ...]):
    """-log p(target) per position, gathered cluster by cluster (no full-vocab concat)."""
    nll = jnp.zeros(targets.shape, jnp.float32)
    for i, lp in enumerate(blocks):
        lo, hi = bounds[i], bounds[i + 1]
        idx = jnp.clip(targets - lo, 0, hi - lo - 1)
        got = jnp.take_along_axis(lp, idx[..., None], -1)[..., 0]
        nll = nll - jnp.where((targets >= lo) & (targets < hi), got, 0.0)
    return nll


def gathered_token_nll(out: dict, targets, bounds: tuple[int, ...]):
    """-log p(target) per flattened position from `AdaptiveEmbedding.gathered` outputs;
    exact wherever no tail overflowed its cap."""
    tf = targets.reshape(-1)
    n0 = bounds[1]
    head = out["head"]
    idx = jnp.where(tf < n0, tf, n0 + jnp.searchsorted(jnp.array(bounds[1:-1]), tf, "right") - 1)
    nll = -jnp.take_along_axis(head, idx[:, None], -1)[:, 0]
    for t in out["tails"]:
        got = jnp.take_along_axis(t["lp"], t["word"][:, None], -1)[:, 0]
        nll = nll.at[t["rows"]].add(-jnp.where(t["valid"], got, 0.0))
    return nll


def gathered_nll(out: dict, targets, bounds: tuple[int, ...]):
    """Mean -log p(target) from `AdaptiveEmbedding.gathered` outputs (exact)."""
    return gathered_token_nll(out, targets, bounds).mean()


def gathered_kl(teacher: dict, student: dict):
    """Mean KL(teacher || student): over the head distribution at every position, plus
    each tail's conditional at the positions gathered for it (the same rows for both, as
    they depend only on the targets). Tail terms are weighted by the teacher's cluster
    probability, so the sum is the full-vocabulary KL on those positions."""
    th, sh = teacher["head"], student["head"]
    n_pos = th.shape[0]
    total = (jnp.exp(th) * (th - sh)).sum()
    n_short = th.shape[1] - len(teacher["tails"])
    for i, (tt, st) in enumerate(zip(teacher["tails"], student["tails"])):
        w = jnp.exp(th[tt["rows"], n_short + i]) * tt["valid"]
        kl = (jnp.exp(tt["lp"]) * (tt["lp"] - st["lp"])).sum(-1)
        total = total + (w * kl).sum()
    return total / n_pos


# ----- construction helpers ----------------------------------------------------------------
def build_model(
    space: SearchSpace,
    vocab: int,
    arch: Arch | None = None,
    *,
    cutoffs=(),
    tail_div: int = 4,
    dropout: float = 0.0,
    attention: str = "dense",
    tied: bool = True,
    compute_dtype: str = "float32",
) -> TransformerLM:
    """The model at `arch` (default: the space's largest, i.e. the supernet). Cluster widths
    always follow the supernet's width so that extracted subnets share them."""
    big = space.largest()
    arch = arch or big
    clusters = Clusters.make(vocab, big.d_model, tuple(cutoffs), tail_div)
    if arch.d_model != big.d_model:  # cluster 0 is in model width; tails keep their dims
        clusters = Clusters(clusters.bounds, (arch.d_model, *clusters.dims[1:]))
    return TransformerLM(
        vocab,
        arch.d_model,
        arch.heads,
        arch.d_ffn,
        space.head_dim,
        clusters,
        dropout,
        attention,
        tied,
        compute_dtype,
    )


def make_model(config: RunConfig, vocab: int, attention: str = "dense") -> TransformerLM:
    """The supernet of a run config (`build_model` with its model section)."""
    m = config.model
    cutoffs = m.cutoffs if m.output == "adaptive" else ()
    check(config)  # a config made in code, not through `override`, is checked here
    return build_model(
        config.space,
        vocab,
        cutoffs=cutoffs,
        tail_div=m.tail_div,
        dropout=m.dropout,
        attention=attention,
        tied=m.tied,
        compute_dtype=m.compute_dtype,
    )


def unigram_biases(clusters: Clusters, train_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Output biases under which zero output tables give the (add-one smoothed) unigram
    distribution of `train_tokens` exactly: log p(word) for head words, log p(cluster) for
    the tail-cluster entries of the head, log p(word | cluster) inside each tail."""
    counts = np.bincount(train_tokens, minlength=clusters.bounds[-1]).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    b = clusters.bounds
    out = {"bias0": logp[: b[1]].astype(np.float32)}
    if clusters.n > 1:
        mass = np.array([counts[b[i] : b[i + 1]].sum() for i in range(1, clusters.n)])
        out["cluster_b"] = np.log(mass / counts.sum()).astype(np.float32)
        for i in range(1, clusters.n):
            part = counts[b[i] : b[i + 1]]
            out[f"bias{i}"] = np.log(part / part.sum()).astype(np.float32)
    return out


def embedding_param_count(model: TransformerLM) -> int:
    c = model.clusters
    tables = sum((c.bounds[i + 1] - c.bounds[i]) * c.dims[i] for i in range(c.n))
    projs = sum(c.dims[i] * model.d_model for i in range(1, c.n))
    n = tables + projs + c.bounds[-1]  # input tables and projections, output biases
    if not model.tied:
        n += tables + projs
    if c.n > 1:
        n += (model.d_model + 1) * (c.n - 1)
    return n


def count_params(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
