"""Post-training int8 of any subnet, fake-quantised in float32: Gemmini's number format.

Owns the quantiser (symmetric int8 in [-127, 127]: weights per output channel, activations
per tensor, as Gemmini scales a whole matmul's input by one factor), the calibration of the
activation scales (a fixed set of train-split windows, no randomness), the int8 forward
(`decode.block` with a quantiser at every GEMM input, and the attention probabilities
quantised before p.V) and its per-window NLL, and `Int8View`, an evaluator whose
perplexities are the int8 model's. It must not change stored weights nor train.

What is int8: every GEMM weight (q/k/v/o projections, both FFN matrices, the adaptive
embedding's tables and projections, the cluster logits) and every GEMM input (the two
layer-norm outputs, q, k, v, the attention probabilities, the attention context, the GELU
output, and the final layer-norm output into the output layer). What stays float: biases
(Gemmini adds them as int32 in the accumulator at the matmul's scale, which is exact to
int32), layer norms, softmax and GELU (host-side or float units), the residual stream,
accumulation (int32 on Gemmini: exact here up to float32 rounding), and the input of the
second matmul of a tail cluster of the adaptive softmax (its d/4-wide projection output,
inside the model's own output layer). The token embedding lookup reads the int8 tables.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cosearch.space import Arch, SearchSpace
from cosearch.stats import Windows
from cosearch.supernet.decode import Attend, full_attention, hidden
from cosearch.supernet.model import TransformerLM, gathered_token_nll

QMAX = 127  # symmetric int8: [-127, 127], zero exactly representable
PROB_SCALE = 1.0 / QMAX  # softmax outputs lie in [0, 1]: a fixed scale, no calibration
CALIB_WINDOWS = 64  # train-split windows of seq_len tokens (4 batches of 16 on `cpu`)
#: The recipe in one string: part of every cached int8 perplexity's key, so a change of
#: recipe never reads an old number.
RECIPE = f"int8-w-channel-a-tensor-absmax-calib{CALIB_WINDOWS}"

# Contraction axes of each GEMM weight, by parameter name (the rest are output channels).
# Tables are (words, width), used as h @ T^T: one scale per word. Projections (width,
# d_model) are used as h @ P^T in the output layer: one scale per row; tied, the input
# embedding reads the same int8 rows.
_CONTRACT = {
    "wq": (0,),
    "wk": (0,),
    "wv": (0,),
    "wo": (0, 1),
    "w1": (0,),
    "w2": (0,),
    "cluster_w": (0,),
}
_CONTRACT_PREFIX = {"emb": (1,), "out": (1,), "proj": (1,), "oproj": (1,)}
_FLOAT_MATRICES = {"bwq", "bwk", "bwv"}  # per-head biases (heads, d_head): stay float


def _safe(scale):
    """A zero scale (an all-zero channel or tensor) quantises everything to 0, not NaN."""
    return jnp.where(scale > 0, scale, 1.0)


def quantise(x, scale):
    """int8 codes of `x` at `scale` (broadcasting): round to nearest, clip to +-127."""
    return jnp.clip(jnp.round(x / _safe(scale)), -QMAX, QMAX).astype(jnp.int8)


def dequantise(q, scale):
    """float32 values of int8 codes `q` at `scale`."""
    return q.astype(jnp.float32) * scale


def fake_quant(x, scale):
    """`dequantise(quantise(x, scale), scale)` in float (jittable, no int8 arrays)."""
    s = _safe(scale)
    return jnp.where(scale > 0, jnp.clip(jnp.round(x / s), -QMAX, QMAX) * s, 0.0)


def absmax_scale(x, axes: tuple[int, ...] | None = None):
    """Symmetric scale: max |x| over `axes` (all: per tensor), kept broadcastable, / 127.
    Values within the range round-trip to within half a step, scale / 2."""
    return jnp.max(jnp.abs(x), axis=axes, keepdims=axes is not None) / QMAX


def contraction_axes(name: str) -> tuple[int, ...] | None:
    """The contraction axes of GEMM weight `name` (None: not a GEMM weight, stays float)."""
    if name in _CONTRACT:
        return _CONTRACT[name]
    for prefix, axes in _CONTRACT_PREFIX.items():
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return axes
    return None


def quantise_params(params: dict) -> dict:
    """`params` ({'params': ...} of a dense model) with every GEMM weight fake-quantised
    per output channel; biases and layer norms unchanged. A matrix this module does not
    know is an error (its GEMM would silently stay float)."""

    def one(path, w):
        name = path[-1].key
        axes = contraction_axes(name)
        if axes is None:
            if w.ndim >= 2 and name not in _FLOAT_MATRICES:
                raise ValueError(
                    f"int8: no quantisation rule for the {w.shape} parameter "
                    f"{'/'.join(p.key for p in path)}; add its contraction axes to "
                    "cosearch/supernet/quant.py (_CONTRACT)"
                )
            return w
        return fake_quant(w, absmax_scale(w, axes))

    return jax.tree_util.tree_map_with_path(one, params)


def int8_attention(q, k, v):
    """Causal attention whose probabilities are quantised (fixed scale 1/127) before p.V;
    q, k, v arrive quantised from `block`'s hooks. Dense scores: evaluation windows are
    the space's length."""
    L = q.shape[1]
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    s = jnp.where(jnp.tril(jnp.ones((L, L), bool)), s, jnp.finfo(s.dtype).min)
    p = fake_quant(jax.nn.softmax(s, axis=-1), PROB_SCALE)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v)


@partial(jax.jit, static_argnames=("model",))
def _site_absmax(model: TransformerLM, params: dict, tokens) -> dict:
    """max |a| of every GEMM input site of the float model on (B, L) tokens."""
    seen: dict = {}

    def record(site, a):
        seen[site] = jnp.max(jnp.abs(a))
        return a

    hidden(model, params, tokens, full_attention(model), record)
    return seen


def calibration_windows(train_tokens: np.ndarray, seq_len: int, n: int = CALIB_WINDOWS):
    """`n` windows of `seq_len` tokens spread evenly over the train split (first at 0,
    last at its end): (n, seq_len) int32, the same for every arch and run."""
    last = len(train_tokens) - seq_len
    if last < 0:
        raise ValueError(
            f"int8 calibration needs at least {seq_len} train tokens, got {len(train_tokens)}"
        )
    starts = np.linspace(0, last, n).round().astype(np.int64)
    return np.stack([train_tokens[s : s + seq_len] for s in starts]).astype(np.int32)


def calibrate(model: TransformerLM, params: dict, windows: np.ndarray, batch_size: int) -> dict:
    """Per-tensor activation scales {site: absmax / 127} of the float dense model over the
    calibration `windows`, in batches of `batch_size` (max over batches)."""
    most: dict[str, float] = {}
    for i in range(0, len(windows), batch_size):
        batch = jnp.asarray(windows[i : i + batch_size])
        for site, m in _site_absmax(model, params, batch).items():
            most[site] = max(most.get(site, 0.0), float(m))
    return {site: jnp.float32(m / QMAX) for site, m in most.items()}


@partial(jax.jit, static_argnames=("model", "caps"))
def int8_eval_step(qparams, scales, inputs, targets, weights, *, model: TransformerLM, caps):
    """`evaluate.eval_step` of the int8 dense model: per-window summed NLL and counts."""

    def aq(site, a):
        return fake_quant(a, scales[site])

    attend: Attend = int8_attention
    h = hidden(model, qparams, inputs, attend, aq)
    out = model.apply(
        qparams, h, targets, caps, method=lambda m, hh, t, c: m.embedding.gathered(hh, t, c)
    )
    nll = gathered_token_nll(out, targets, model.clusters.bounds).reshape(weights.shape)
    return (nll * weights).sum(-1), weights.sum(-1)


def quantised_model(
    space: SearchSpace,
    supernet: TransformerLM,
    params: dict,
    arch: Arch,
    train_tokens: np.ndarray,
    batch_size: int,
) -> tuple[TransformerLM, dict, dict]:
    """(dense model of `arch`, its int8 weights, its calibrated activation scales)."""
    from cosearch.supernet.extract import extract

    model, dense = extract(space, {"params": params}, arch, supernet)
    scales = calibrate(model, dense, calibration_windows(train_tokens, space.seq_len), batch_size)
    return model, quantise_params(dense), scales


def int8_windows(
    space: SearchSpace,
    supernet: TransformerLM,
    params: dict,
    arch: Arch,
    train_tokens: np.ndarray,
    tokens: np.ndarray,
    batch_size: int,
    max_tokens: int | None = None,
) -> Windows:
    """Per-window NLL sums of the int8 `arch` over the evaluation windows of `tokens` (the
    same windows as `evaluate.split_windows`, so int8 and float are paired)."""
    from cosearch.data import eval_batches
    from cosearch.supernet.evaluate import batch_windows, exact_caps

    model, qparams, scales = quantised_model(
        space, supernet, params, arch, train_tokens, batch_size
    )
    batches = list(eval_batches(tokens, batch_size, space.seq_len, max_tokens))
    caps = exact_caps(model, batches)
    try:
        return batch_windows(
            batches,
            lambda x, y, w: int8_eval_step(qparams, scales, x, y, w, model=model, caps=caps),
        )
    finally:  # compiled once per arch: drop them (see evaluate.dense_eval_step)
        int8_eval_step.clear_cache()
        _site_absmax.clear_cache()


class Int8View:
    """An `Evaluator` seen through int8: `perplexity` and `windows` (same arguments, same
    windows, its cache) score the int8 model; everything else is the evaluator's own.
    `float_evaluator` is the float32 one, for int8 - float32 differences."""

    precision = "int8"

    def __init__(self, evaluator: Any):
        self.float_evaluator = evaluator

    def __getattr__(self, name: str) -> Any:
        return getattr(self.float_evaluator, name)

    def windows(
        self, arch: Arch, split: str = "valid", max_tokens: int | None = None, *, save: bool = True
    ) -> Windows:
        return self.float_evaluator.windows(arch, split, max_tokens, save=save, int8=True)

    def has_windows(self, arch: Arch, split: str = "valid", max_tokens: int | None = None) -> bool:
        return self.float_evaluator.has_windows(arch, split, max_tokens, int8=True)

    def perplexity(
        self, arch: Arch, split: str = "valid", max_tokens: int | None = None, *, save: bool = True
    ) -> float:
        return self.windows(arch, split, max_tokens, save=save).ppl
