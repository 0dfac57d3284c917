"""Toy problems and stand-ins for the expensive parts, for tests and benchmarks.

`ZDT1` is a two-objective problem with a known front on integer genes; `toy_perplexity`
and `ToyCoster` stand in for the supernet and the LUT coster (same interfaces, monotone in
model size, microseconds per call). Nothing here is used by a real search.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosearch.space import Arch, SearchSpace


class ZDT1:
    """ZDT1 (Zitzler, Deb & Thiele 2000) on a grid: x_i = g_i / (levels - 1).

    The front is g = 1 (all genes but the first at 0): f2 = 1 - sqrt(f1), with f1 on the
    grid of the first gene, so its hypervolume is exact (`true_front`)."""

    def __init__(self, n_genes: int = 6, levels: int = 21) -> None:
        self.gene_cardinalities = (levels,) * n_genes
        self.levels = levels
        self.generation = 0
        self.calls = 0

    def f(self, genes: Sequence[int]) -> tuple[float, float]:
        x = [g / (self.levels - 1) for g in genes]
        g = 1 + 9 * sum(x[1:]) / (len(x) - 1)
        return x[0], g * (1 - math.sqrt(x[0] / g))

    def true_front(self) -> list[tuple[float, float]]:
        return [self.f([i] + [0] * (len(self.gene_cardinalities) - 1)) for i in range(self.levels)]

    def evaluate_fitness(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
        self.calls += len(genomes)
        return [self.f(g) for g in genomes]

    def feasible_objectives(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
        return [self.f(g) for g in genomes]

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = int(state["calls"])


def toy_perplexity(space: SearchSpace) -> Any:
    """A perplexity stand-in: falls with the subnet's non-embedding parameters, plus a
    small deterministic per-arch jitter (so layer mixes matter)."""

    def ppl(arch: Arch) -> float:
        p = space.param_count(arch, embeddings=False)
        jitter = int(hashlib.sha1(arch.to_json().encode()).hexdigest()[:6], 16) / 16**6
        return 20.0 + 4000.0 / math.sqrt(p) + 0.5 * jitter

    return ppl


class ToyEvaluator:
    """`Evaluator`-shaped wrapper of `toy_perplexity` (splits shift the value a little)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._ppl = toy_perplexity(space)
        self.calls = 0

    def perplexity(self, arch: Arch, split: str = "valid", max_tokens: int | None = None) -> float:
        self.calls += 1
        shift = {"valid": 0.0, "test": 0.3}[split] + (0.05 if max_tokens else 0.0)
        return self._ppl(arch) + shift

    def windows(self, arch: Arch, split: str = "valid", max_tokens: int | None = None):
        """Per-window NLL sums whose perplexity is exactly `perplexity(...)`: windows of
        64 tokens (max_tokens // 64 of them, or 64), with arch-specific zero-sum noise."""
        from cosearch.stats import Windows

        n = max(2, (max_tokens or 4096) // 64)
        tokens = np.full(n, 64.0)
        seed = int(hashlib.sha1(f"{arch.to_json()}|{split}".encode()).hexdigest()[:8], 16)
        noise = np.random.default_rng(seed).normal(0, 0.05, n)
        nll = tokens * (math.log(self.perplexity(arch, split, max_tokens)) + noise - noise.mean())
        return Windows(nll, tokens)


@dataclass(frozen=True)
class ToyCost:
    latency_s: float
    energy_J: float

    @property
    def edp(self) -> float:
        return self.latency_s * self.energy_J


class ToyCoster:
    """A coster stand-in: MACs over the PE array, energy growing with buffer sizes."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def cost(self, arch: Arch, hw: Any) -> ToyCost:
        macs = self.space.macs(arch)
        pes = getattr(hw, "pe_rows", 16) * getattr(hw, "pe_cols", 16)
        sp, acc = getattr(hw, "sp_kib", 256), getattr(hw, "acc_kib", 64)
        cycles = macs / pes * (1 + 8 / acc) + 1000
        energy_pj = macs * (1.0 + 0.05 * math.log2(sp) + 0.02 * math.log2(acc))
        return ToyCost(cycles * 1e-9, energy_pj * 1e-12)

    def cost_many(self, archs: Sequence[Arch], hw: Any) -> list[ToyCost]:
        return [self.cost(a, hw) for a in archs]
