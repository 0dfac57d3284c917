"""Uncertainty of perplexities measured on windows of text: paired differences, intervals.

A perplexity here is exp(sum of NLL / tokens) over fixed evaluation windows. Two archs
scored on the same windows give a *paired* difference, whose standard error comes from the
per-window NLL sums (linearisation of the ratio estimator, treating windows as the units
of sampling), and whose interval comes from a bootstrap over windows. Nothing here knows
about models: inputs are per-window arrays from `cosearch.supernet.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Windows:
    """Per-window summed NLL (nats) and scored-token counts of one arch on one split."""

    nll: np.ndarray
    tokens: np.ndarray

    def __post_init__(self):
        if self.nll.shape != self.tokens.shape or self.nll.ndim != 1:
            raise ValueError("nll and tokens must be 1-D arrays of one length")

    @property
    def ppl(self) -> float:
        return float(np.exp(self.nll.sum() / self.tokens.sum()))

    def to_dict(self) -> dict:
        return {"nll": self.nll.tolist(), "tokens": self.tokens.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Windows:
        return cls(np.asarray(d["nll"], np.float64), np.asarray(d["tokens"], np.float64))


def _check_paired(a: Windows, b: Windows) -> None:
    if a.tokens.shape != b.tokens.shape or not np.array_equal(a.tokens, b.tokens):
        raise ValueError("a paired difference needs both archs scored on the same windows")


def ppl_se(a: Windows) -> float:
    """Standard error of one perplexity over window sampling (delta method)."""
    return paired_delta(a, Windows(np.zeros_like(a.nll), a.tokens))[1]


def paired_delta(a: Windows, b: Windows) -> tuple[float, float]:
    """(ppl(a) - ppl(b), its standard error). With r = sum(nll)/sum(tokens), the
    linearised residual of window i is exp(r_a)(a_i - r_a n_i) - exp(r_b)(b_i - r_b n_i),
    over the total tokens; the variance is n/(n-1) times their sum of squares."""
    _check_paired(a, b)
    n_tot = a.tokens.sum()
    ra, rb = a.nll.sum() / n_tot, b.nll.sum() / n_tot
    z = (np.exp(ra) * (a.nll - ra * a.tokens) - np.exp(rb) * (b.nll - rb * b.tokens)) / n_tot
    n = len(z)
    se = float(np.sqrt(n / max(n - 1, 1) * (z * z).sum()))
    return float(np.exp(ra) - np.exp(rb)), se


def bootstrap_weights(n_windows: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_windows) multiplicities of windows in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_windows, np.full(n_windows, 1 / n_windows), size=n_boot)


def bootstrap_ppl(w: np.ndarray, a: Windows) -> np.ndarray:
    """Perplexity of `a` under each resample of `bootstrap_weights`."""
    return np.exp((w @ a.nll) / (w @ a.tokens))


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
