"""What an individual costs: genome -> (arch, hw) -> objectives, constraints, cache.

Owns the search *problem* of the co-search (pymoo's Problem, in DEAP terms the evaluate
function): decoding an integer genome into an `Arch` (and, when the hardware is searched, a
Gemmini config), the objectives (perplexity from an injected function, latency/energy/EDP
from an injected coster), the constraints (max perplexity, max latency, SRAM budget) and
the evaluation cache. It must not know how individuals evolve (that is `nsga2.py`) nor load
checkpoints or LUTs itself: callers inject `ppl_fn` and `coster`, so tests use toy ones.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cosearch.errors import UserError
from cosearch.space import Arch, SearchSpace

log = logging.getLogger(__name__)

#: Objective names accepted by `--objectives`; all are minimised.
OBJECTIVES = ("ppl", "edp", "latency", "energy")
#: Fitness given to every objective of an infeasible individual, scaled by (1 + violation):
#: any feasible point dominates it and less-violating infeasible points dominate more-
#: violating ones (Deb's constraint-domination, expressed as a penalty DEAP can sort).
PENALTY = 1e12


class SearchError(UserError):
    """A search that cannot run or gave no answer (the message says what to change)."""


class InfeasibleError(SearchError):
    """No evaluated individual satisfies the constraints."""


class Coster(Protocol):
    """The part of `cosearch.hw.lut.Coster` the problem uses."""

    def cost_many(self, archs: Sequence[Arch], hw: Any) -> list[Any]: ...


@dataclass
class Evaluation:
    """Everything known about one (arch, hw) pair; one row of evaluated.csv."""

    arch: Arch
    hw: str
    ppl: float
    latency_s: float
    energy_J: float
    edp: float
    params: int
    flops: int
    violation: float = 0.0  # 0 = feasible; otherwise sum of relative constraint excesses
    generation: int = 0  # generation in which the pair was first evaluated
    extra: dict[str, float] = field(default_factory=dict)  # e.g. full valid/test ppl

    @property
    def feasible(self) -> bool:
        return self.violation == 0.0

    @property
    def latency_ms(self) -> float:
        return self.latency_s * 1e3

    def objective(self, name: str) -> float:
        return {
            "ppl": self.ppl,
            "edp": self.edp,
            "latency": self.latency_s,
            "energy": self.energy_J,
        }[name]

    def to_dict(self) -> dict:
        return {
            "arch": self.arch.to_dict(),
            "arch_id": self.arch.short(),
            "hw": self.hw,
            "ppl": self.ppl,
            "latency_s": self.latency_s,
            "energy_J": self.energy_J,
            "edp": self.edp,
            "params": self.params,
            "flops": self.flops,
            "violation": self.violation,
            "feasible": self.feasible,
            "generation": self.generation,
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        known = {
            "arch",
            "arch_id",
            "hw",
            "ppl",
            "latency_s",
            "energy_J",
            "edp",
            "params",
            "flops",
            "violation",
            "feasible",
            "generation",
        }
        return cls(
            Arch.from_dict(d["arch"]),
            d["hw"],
            float(d["ppl"]),
            float(d["latency_s"]),
            float(d["energy_J"]),
            float(d["edp"]),
            int(d["params"]),
            int(d["flops"]),
            float(d["violation"]),
            int(d["generation"]),
            {k: float(v) for k, v in d.items() if k not in known},
        )


@dataclass
class Timers:
    """Wall time spent inside the injected functions (for the benchmark's time split)."""

    ppl_s: float = 0.0
    hw_s: float = 0.0
    ppl_calls: int = 0
    hw_archs: int = 0


def _hw_name(hw: Any) -> str:
    return str(getattr(hw, "name", hw))


class Problem:
    """The co-search problem on one search space.

    Genome = the arch genes of `space` (see `SearchSpace.gene_cardinalities`), followed by
    the hardware genes of `hw_space` when the hardware is searched. With `hw_space=None`
    every individual runs on the fixed `hw`.

    `ppl_fn(arch)` gives the search-time perplexity (a fixed validation subset); it is
    cached by arch, since it does not depend on the hardware. `coster.cost_many(archs, hw)`
    gives objects with `latency_s`, `energy_J` and `edp`; pairs are cached by (arch, hw).
    """

    def __init__(
        self,
        space: SearchSpace,
        ppl_fn: Callable[[Arch], float],
        coster: Coster,
        *,
        hw: Any = None,
        hw_space: Any = None,
        objectives: Sequence[str] = ("ppl", "edp"),
        max_ppl: float | None = None,
        max_latency_s: float | None = None,
        ppl_cache: dict[Arch, float] | None = None,
    ) -> None:
        if (hw is None) == (hw_space is None):
            raise SearchError("give exactly one of a fixed `hw` or a `hw_space` to search")
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad or not objectives or len(set(objectives)) != len(objectives):
            raise SearchError(
                f"objectives {list(objectives)} invalid: choose distinct names from "
                f"{list(OBJECTIVES)}, e.g. --objectives ppl,edp"
            )
        for name, v in (("max perplexity", max_ppl), ("max latency", max_latency_s)):
            if v is not None and not v > 0:
                raise SearchError(f"{name} must be positive, got {v}")
        self.space = space
        self.ppl_fn = ppl_fn
        self.coster = coster
        self.hw = hw
        self.hw_space = hw_space
        self.objectives = tuple(objectives)
        self.max_ppl = max_ppl
        self.max_latency_s = max_latency_s
        self.arch_card = tuple(space.gene_cardinalities)
        hw_card = tuple(hw_space.gene_cardinalities) if hw_space is not None else ()
        self.gene_cardinalities: tuple[int, ...] = self.arch_card + hw_card
        # Shared between problems on different hardware: perplexity does not depend on it.
        self.ppl_cache: dict[Arch, float] = {} if ppl_cache is None else ppl_cache
        self.cache: dict[tuple[Arch, str], Evaluation] = {}
        self.hw_configs: dict[str, Any] = {} if hw is None else {_hw_name(hw): hw}
        self.timers = Timers()
        # (hw, why an arch cannot run on it) -> pairs evaluated so (cost model capacity)
        self.cannot_run: dict[tuple[str, str], int] = {}
        self._decoded: dict[tuple[int, ...], tuple[Arch, Any]] = {}  # genome -> (arch, hw)
        self.generation = 0  # set by the algorithm; stamped on new evaluations

    # ----- decoding ---------------------------------------------------------------------
    def decode(self, genome: Sequence[int]) -> tuple[Arch, Any]:
        """Genome -> (arch, hw config), memoised. A malformed genome raises SearchError
        (wrong length) or ArchError (a gene out of range)."""
        key = tuple(genome)
        hit = self._decoded.get(key)
        if hit is None:
            hit = self._decoded[key] = self._decode(genome)
        return hit

    def _decode(self, genome: Sequence[int]) -> tuple[Arch, Any]:
        if len(genome) != len(self.gene_cardinalities):
            raise SearchError(
                f"genome has {len(genome)} genes; this problem needs {len(self.gene_cardinalities)}"
            )
        n = len(self.arch_card)
        arch = self.space.decode(list(genome[:n]))
        if self.hw_space is None:
            return arch, self.hw
        hw = self.hw_space.decode(list(genome[n:]))
        self.hw_configs.setdefault(_hw_name(hw), hw)
        return arch, hw

    def encode(self, arch: Arch, hw: Any = None) -> list[int]:
        genes = self.space.encode(arch)
        if self.hw_space is not None:
            genes += list(self.hw_space.encode(hw))
        return genes

    def hw_config(self, name: str) -> Any:
        """The hardware config of a name seen in this problem (for baselines)."""
        if name not in self.hw_configs and self.hw_space is not None:
            for cfg in self.hw_space.configs():
                self.hw_configs.setdefault(_hw_name(cfg), cfg)
        return self.hw_configs[name]

    # ----- evaluation -------------------------------------------------------------------
    def perplexity(self, arch: Arch) -> float:
        if arch not in self.ppl_cache:
            t = time.perf_counter()
            ppl = float(self.ppl_fn(arch))
            self.timers.ppl_s += time.perf_counter() - t
            self.timers.ppl_calls += 1
            if not math.isfinite(ppl):
                log.warning("perplexity of %s is %s; it will never be feasible", arch.short(), ppl)
                ppl = math.inf
            self.ppl_cache[arch] = ppl
        return self.ppl_cache[arch]

    def _budget_excess(self, hw: Any) -> float:
        """Relative excess of the hardware over the SRAM budget of the searched space."""
        if self.hw_space is None or self.hw_space.feasible(hw):
            return 0.0
        excess = hw.total_sram_kib / self.hw_space.budget_kib - 1.0
        area_budget = getattr(self.hw_space, "budget_mm2", None)
        if area_budget:
            excess = max(excess, hw.area_mm2() / area_budget - 1.0)
        return max(excess, 1e-9)  # infeasible however small the excess

    def _violation(self, ppl: float, latency_s: float) -> float:
        v = 0.0 if math.isfinite(ppl) else 1e6
        if self.max_ppl is not None and ppl > self.max_ppl:
            v += min(ppl / self.max_ppl - 1.0, 1e6)  # finite even for ppl = inf
        if self.max_latency_s is not None and latency_s > self.max_latency_s:
            v += latency_s / self.max_latency_s - 1.0
        return v

    def _note_cannot_run(self, hw: str, reason: str) -> None:
        """Say once per (config, reason) why pairs on it are infeasible (`cannot_run`)."""
        key = (hw, reason)
        if key not in self.cannot_run:
            self.cannot_run[key] = 0
            log.warning("%s cannot run some archs: %s; they are infeasible", hw, reason)
        self.cannot_run[key] += 1

    def evaluate_pairs(self, pairs: Sequence[tuple[Arch, Any]]) -> list[Evaluation]:
        """Evaluate (arch, hw) pairs, costing the uncached ones in one batch per hw."""
        todo: dict[str, dict[Arch, None]] = {}
        for arch, hw in pairs:
            name = _hw_name(hw)
            self.hw_configs.setdefault(name, hw)
            if (arch, name) not in self.cache:
                todo.setdefault(name, {})[arch] = None
        for name, archs_d in todo.items():
            archs = list(archs_d)
            over = self._budget_excess(self.hw_configs[name])
            if over > 0:  # not costed: a LUT need not exist for over-budget hardware
                for arch in archs:
                    self.cache[(arch, name)] = Evaluation(
                        arch,
                        name,
                        math.nan,
                        math.nan,
                        math.nan,
                        math.nan,
                        self.space.param_count(arch),
                        self.space.flops(arch),
                        over,
                        self.generation,
                    )
                continue
            t = time.perf_counter()
            costs = self.coster.cost_many(archs, self.hw_configs[name])
            self.timers.hw_s += time.perf_counter() - t
            self.timers.hw_archs += len(archs)
            for arch, c in zip(archs, costs, strict=True):
                lat, en = float(c.latency_s), float(c.energy_J)
                cannot_run = float(getattr(c, "violation", 0.0))
                if cannot_run > 0:
                    # The arch cannot run on this config (a softmax or LayerNorm row does
                    # not fit): infeasible whatever its perplexity.
                    ppl, viol = math.nan, cannot_run
                    self._note_cannot_run(name, getattr(c, "infeasible", ""))
                elif self.max_latency_s is not None and lat > self.max_latency_s:
                    # Infeasible whatever its perplexity: skip the expensive evaluation.
                    ppl, viol = math.nan, lat / self.max_latency_s - 1.0
                else:
                    ppl = self.perplexity(arch)
                    viol = self._violation(ppl, lat)
                self.cache[(arch, name)] = Evaluation(
                    arch,
                    name,
                    ppl,
                    lat,
                    en,
                    float(c.edp),
                    self.space.param_count(arch),
                    self.space.flops(arch),
                    viol,
                    self.generation,
                )
        return [self.cache[(arch, _hw_name(hw))] for arch, hw in pairs]

    def evaluate(self, genomes: Sequence[Sequence[int]]) -> list[Evaluation]:
        return self.evaluate_pairs([self.decode(g) for g in genomes])

    def fitness(self, ev: Evaluation) -> tuple[float, ...]:
        """Objective values to minimise; infeasible pairs get the scaled penalty."""
        if not ev.feasible:
            return (PENALTY * (1.0 + ev.violation),) * len(self.objectives)
        return tuple(ev.objective(o) for o in self.objectives)

    def evaluate_fitness(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
        """The algorithm's entry point: genomes -> fitness tuples (minimised)."""
        return [self.fitness(ev) for ev in self.evaluate(genomes)]

    def feasible_objectives(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
        """Objective vectors of the feasible genomes (for the hypervolume)."""
        return [
            tuple(ev.objective(o) for o in self.objectives)
            for ev in self.evaluate(genomes)
            if ev.feasible
        ]

    def archive_objectives(self) -> list[tuple[float, ...]]:
        """Objective vectors of every feasible pair evaluated so far (the archive)."""
        return [
            tuple(ev.objective(o) for o in self.objectives)
            for ev in self.cache.values()
            if ev.feasible
        ]

    # ----- checkpoint -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-able cache: every evaluated pair and every perplexity."""
        return {
            "evaluations": [ev.to_dict() for ev in self.cache.values()],
            "ppl": [[a.to_dict(), p] for a, p in self.ppl_cache.items()],
            "timers": asdict(self.timers),
        }

    def load_state_dict(self, state: dict) -> None:
        self.ppl_cache.update({Arch.from_dict(a): float(p) for a, p in state["ppl"]})
        if "timers" in state:  # time spent before the resume (absent in older checkpoints)
            self.timers = Timers(**state["timers"])
        self.cache = {}
        for d in state["evaluations"]:
            ev = Evaluation.from_dict(d)
            self.cache[(ev.arch, ev.hw)] = ev

    def evaluations(self) -> list[Evaluation]:
        """Every pair evaluated so far, in order of first evaluation."""
        return list(self.cache.values())
