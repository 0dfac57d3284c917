"""Count-based n-gram language models: the floor every neural perplexity is read against.

Owns maximum-likelihood unigram and interpolated Kneser-Ney (Chen & Goodman 1998, one
absolute discount per order, D = n1 / (n1 + 2 n2)) bigram and trigram models over integer
token streams, vectorised with numpy. It must not know about neural models or the data
files: callers pass the token arrays of `cosearch.data.Corpus`.

Scoring follows the neural evaluator: every token of a split but the first is a target,
and a target's context is the tokens before it in the same split (the second token of a
split has no trigram context and is scored by the bigram part alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _keys(tokens: np.ndarray, n: int, vocab: int) -> np.ndarray:
    """Each n-gram of the stream as one int64 (base-`vocab` digits), in stream order."""
    t = tokens.astype(np.int64)
    key = np.zeros(len(t) - n + 1, np.int64)
    for i in range(n):
        key = key * vocab + t[i : len(t) - n + 1 + i]
    return key


class _Table:
    """Sorted distinct keys with a value each; lookups of absent keys give 0."""

    def __init__(self, keys: np.ndarray, values: np.ndarray | None = None):
        if values is None:
            self.keys, self.values = np.unique(keys, return_counts=True)
        else:
            self.keys, self.values = keys, values

    def __getitem__(self, query: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.zeros(len(query), np.int64)
        i = np.clip(np.searchsorted(self.keys, query), 0, len(self.keys) - 1)
        return np.where(self.keys[i] == query, self.values[i], 0)


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    if n1 == 0:
        return 0.5
    return n1 / (n1 + 2 * n2)


def _group(keys: np.ndarray, div: int) -> _Table:
    """Number of distinct keys per prefix key // div (N1+(prefix .))."""
    prefixes, counts = np.unique(keys // div, return_counts=True)
    return _Table(prefixes, counts)


def _group_sum(keys: np.ndarray, values: np.ndarray, div: int) -> _Table:
    """Sum of `values` per prefix key // div (keys sorted)."""
    prefixes, starts = np.unique(keys // div, return_index=True)
    return _Table(prefixes, np.add.reduceat(values, starts))


@dataclass
class NGramModel:
    """Unigram (order 1, maximum likelihood) or interpolated Kneser-Ney (order 2 or 3)."""

    order: int
    vocab: int

    def fit(self, train: np.ndarray) -> NGramModel:
        if self.order not in (1, 2, 3):
            raise ValueError(f"order {self.order}: expected 1, 2 or 3")
        if len(train) < self.order + 1:
            raise ValueError(f"{len(train)} training tokens are too few for order {self.order}")
        V = self.vocab
        self.uni_counts = np.bincount(train, minlength=V).astype(np.int64)
        if self.order == 1:
            return self
        bi = _Table(_keys(train, 2, V))
        # continuation unigram: in how many distinct contexts each word appears
        cont_w = np.bincount(bi.keys % V, minlength=V).astype(np.float64)
        self.d1 = _discount(cont_w.astype(np.int64))
        total = cont_w.sum()
        seen_types = (cont_w > 0).sum()
        self.p_cont1 = (
            np.maximum(cont_w - self.d1, 0) + self.d1 * seen_types / V
        ) / total  # interpolated with the uniform distribution: no word gets zero
        if self.order == 2:
            self.bi, self.d2 = bi, _discount(bi.values)
            self.bi_ctx = _group_sum(bi.keys, bi.values, V)  # c(v .)
            self.bi_types = _group(bi.keys, V)  # N1+(v .)
            return self
        tri = _Table(_keys(train, 3, V))
        # middle order uses continuation counts N1+(. v w) over distinct trigrams
        mid_keys, mid_counts = np.unique(tri.keys % (V * V), return_counts=True)
        self.mid = _Table(mid_keys, mid_counts)
        self.d2 = _discount(mid_counts)
        self.mid_ctx = _group_sum(mid_keys, mid_counts, V)  # N1+(. v .)
        self.mid_types = _group(mid_keys, V)  # N1+(v .) among continuations
        self.tri, self.d3 = tri, _discount(tri.values)
        self.tri_ctx = _group_sum(tri.keys, tri.values, V)  # c(u v .)
        self.tri_types = _group(tri.keys, V)  # N1+(u v .)
        return self

    def _bigram(self, v: np.ndarray, w: np.ndarray, table, ctx, types, d) -> np.ndarray:
        """Interpolated KN bigram-level probability p(w | v) with the given count tables."""
        V = self.vocab
        c = table[v * V + w].astype(np.float64)
        cv = ctx[v].astype(np.float64)
        nv = types[v].astype(np.float64)
        lower = self.p_cont1[w]
        safe = np.maximum(cv, 1)
        p = np.maximum(c - d, 0) / safe + d * nv / safe * lower
        return np.where(cv > 0, p, lower)

    def token_log_probs(self, tokens: np.ndarray) -> np.ndarray:
        """Natural log p(token_i | context) for every i >= 1 of the stream."""
        V = self.vocab
        t = tokens.astype(np.int64)
        w = t[1:]
        if self.order == 1:
            return np.log(self.uni_counts[w] / self.uni_counts.sum())
        v = t[:-1]
        if self.order == 2:
            return np.log(self._bigram(v, w, self.bi, self.bi_ctx, self.bi_types, self.d2))
        p2 = self._bigram(v, w, self.mid, self.mid_ctx, self.mid_types, self.d2)
        u = np.concatenate([[-1], t[:-2]])  # the first target has no trigram context
        has = u >= 0
        uv = np.where(has, u, 0) * V + v
        c = self.tri[uv * V + w].astype(np.float64)
        cuv = np.where(has, self.tri_ctx[uv], 0).astype(np.float64)
        nuv = self.tri_types[uv].astype(np.float64)
        safe = np.maximum(cuv, 1)
        p3 = np.maximum(c - self.d3, 0) / safe + self.d3 * nuv / safe * p2
        return np.log(np.where(cuv > 0, p3, p2))

    def perplexity(self, tokens: np.ndarray) -> float:
        return float(np.exp(-self.token_log_probs(tokens).mean()))
