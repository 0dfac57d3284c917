"""Slice the supernet's shared weights into a dense standalone model of one subnet.

The extracted model's outputs equal the masked supernet's (tests check this on many random
archs): the proof that weight sharing is implemented right. It must not change weights.
"""

from __future__ import annotations

import jax
import numpy as np

from cosearch.space import Arch, SearchSpace
from cosearch.supernet.model import TransformerLM, build_model

# For each parameter name: how to slice it given (d, h, f) of one layer / the model.
_SLICES = {
    "scale": lambda x, d, h, f: x[:d],
    "bias": lambda x, d, h, f: x[:d],
    "wq": lambda x, d, h, f: x[:d, :h],
    "wk": lambda x, d, h, f: x[:d, :h],
    "wv": lambda x, d, h, f: x[:d, :h],
    "bwq": lambda x, d, h, f: x[:h],
    "bwk": lambda x, d, h, f: x[:h],
    "bwv": lambda x, d, h, f: x[:h],
    "wo": lambda x, d, h, f: x[:h, :, :d],
    "bo": lambda x, d, h, f: x[:d],
    "w1": lambda x, d, h, f: x[:d, :f],
    "b1": lambda x, d, h, f: x[:f],
    "w2": lambda x, d, h, f: x[:f, :d],
    "b2": lambda x, d, h, f: x[:d],
}


def _slice_embedding(p: dict, d: int) -> dict:
    out = {}
    for name, x in p.items():
        if name in ("emb0", "out0") or name.startswith(("proj", "oproj")):
            out[name] = x[:, :d]
        elif name == "cluster_w":
            out[name] = x[:d]
        else:  # tail tables and biases keep their shapes
            out[name] = x
    return out


def extract(
    space: SearchSpace, params: dict, arch: Arch, model: TransformerLM | None = None
) -> tuple[TransformerLM, dict]:
    """(dense model of `arch`, its params) from the supernet `params` ({'params': ...})."""
    space.validate(arch)
    sup = model or build_model(space, _vocab_of(params))
    dense = build_model(
        space,
        sup.vocab,
        arch,
        cutoffs=sup.clusters.bounds[1:-1],
        tail_div=_tail_div(sup),
        dropout=sup.dropout,
        attention=sup.attention,
        tied=sup.tied,
        compute_dtype=sup.compute_dtype,
    )
    p = params["params"]
    d = arch.d_model
    new = {
        "embedding": _slice_embedding(p["embedding"], d),
        "ln_f": {k: v[:d] for k, v in p["ln_f"].items()},
    }
    for i, (h, f) in enumerate(zip(arch.heads, arch.d_ffn)):
        blk = p[f"block{i}"]
        out = {}
        for name, x in blk.items():
            if isinstance(x, dict):  # ln1 / ln2
                out[name] = {k: _SLICES[k](v, d, h, f) for k, v in x.items()}
            else:
                out[name] = _SLICES[name](x, d, h, f)
        new[f"block{i}"] = out
    return dense, {"params": jax.tree_util.tree_map(np.asarray, new)}


def _vocab_of(params: dict) -> int:
    emb = params["params"]["embedding"]
    return int(sum(v.shape[0] for k, v in emb.items() if k.startswith("emb")))  # inputs only


def _tail_div(model: TransformerLM) -> int:
    dims = model.clusters.dims
    return dims[0] // dims[1] if len(dims) > 1 else 4
