"""The NSGA-II loop (DEAP), checkpointed every generation.

Owns *how* individuals evolve: random integer genomes, uniform or two-point crossover,
uniform-reset mutation per gene, `selTournamentDCD` for mating and `selNSGA2` (non-dominated
sorting + crowding distance) for survival, written out explicitly as in DEAP's own NSGA-II
example. It must not know what a genome means: the problem object gives fitness tuples
(all objectives minimised). DEAP draws from Python's global `random`, so the loop seeds it
and saves its state with the population, generation and the problem's cache; `resume=True`
continues from the last completed generation and gives the same result as an
uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from deap import base, tools
from tqdm.auto import tqdm

from cosearch.errors import UserError
from cosearch.evo.pareto import hypervolume
from cosearch.runinfo import write_json_atomic

log = logging.getLogger(__name__)

CROSSOVERS = ("uniform", "two-point")
CHECKPOINT_VERSION = 1


class EvoProblem(Protocol):
    """What the loop needs from a problem (see `cosearch.evo.problem.Problem`)."""

    gene_cardinalities: tuple[int, ...]
    generation: int

    def evaluate_fitness(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]: ...

    def feasible_objectives(self, genomes: Sequence[Sequence[int]]) -> list[tuple[float, ...]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class CheckpointError(UserError):
    """A checkpoint that cannot be resumed (the message says why and what to do)."""


@dataclass(frozen=True)
class Settings:
    """NSGA-II settings; defaults are the thesis's (population 40, 40 generations, 0.2)."""

    population: int = 40
    generations: int = 40
    mutation_prob: float = 0.2  # per gene: reset to a uniformly drawn value
    crossover_prob: float = 0.9  # per pair of offspring
    crossover: str = "uniform"  # or "two-point"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.population < 4 or self.population % 4:
            raise UserError(
                f"--population must be a positive multiple of 4 (DEAP's selTournamentDCD "
                f"picks in fours); got {self.population}, use e.g. "
                f"{max(4, self.population // 4 * 4)} or {self.population // 4 * 4 + 4}"
            )
        if self.generations < 0:
            raise UserError(f"--generations must be >= 0, got {self.generations}")
        for name in ("mutation_prob", "crossover_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} must be in [0, 1], got {getattr(self, name)}")
        if self.crossover not in CROSSOVERS:
            raise UserError(f"--crossover '{self.crossover}' unknown; known: {list(CROSSOVERS)}")


@dataclass
class Result:
    """The final population (genomes and fitness) and the per-generation history."""

    genomes: list[list[int]]
    fitness: list[tuple[float, ...]]
    history: list[dict] = field(default_factory=list)
    ref_point: tuple[float, ...] = ()


class Individual(list):
    """A genome (list of choice indices) with a DEAP fitness; no global `creator`."""

    fitness: base.Fitness


def _fitness_class(n_obj: int) -> type[base.Fitness]:
    return type(f"MinFitness{n_obj}", (base.Fitness,), {"weights": (-1.0,) * n_obj})


def _individual(genes: Sequence[int], fitness_cls: type[base.Fitness]) -> Individual:
    ind = Individual(int(g) for g in genes)
    ind.fitness = fitness_cls()
    return ind


class _Loop:
    def __init__(
        self,
        problem: EvoProblem,
        settings: Settings,
        ref_point: Sequence[float],
        checkpoint: Path | None,
    ) -> None:
        self.problem = problem
        self.s = settings
        self.ref = tuple(float(r) for r in ref_point)
        self.ckpt = checkpoint
        self.card = tuple(problem.gene_cardinalities)
        self.fitness_cls = _fitness_class(len(self.ref))
        self.toolbox = base.Toolbox()
        self.toolbox.register(
            "mate",
            tools.cxUniform if settings.crossover == "uniform" else tools.cxTwoPoint,
            **({"indpb": 0.5} if settings.crossover == "uniform" else {}),
        )
        self.toolbox.register(
            "mutate",
            tools.mutUniformInt,
            low=[0] * len(self.card),
            up=[c - 1 for c in self.card],
            indpb=settings.mutation_prob,
        )
        self.history: list[dict] = []
        self.generation = -1
        self.pop: list[Individual] = []

    # ----- steps ------------------------------------------------------------------------
    def evaluate(self, inds: list[Individual]) -> None:
        todo = [ind for ind in inds if not ind.fitness.valid]
        for ind, fit in zip(todo, self.problem.evaluate_fitness(todo), strict=True):
            ind.fitness.values = fit

    def record(self, gen: int, t0: float) -> dict:
        objs = self.problem.feasible_objectives(self.pop)
        fronts = tools.sortNondominated(self.pop, len(self.pop), first_front_only=True)
        timers = getattr(self.problem, "timers", None)
        row = {
            "generation": gen,
            "hypervolume": hypervolume(objs, self.ref, normalize=True),
            "n_feasible": len(objs),
            "n_front": len(fronts[0]) if fronts else 0,
            "n_evaluated": len(getattr(self.problem, "cache", ())),
            "time_s": time.perf_counter() - t0,
        }
        archive = getattr(self.problem, "archive_objectives", None)
        if archive is not None:  # every pair seen so far: never decreases
            row["hypervolume_archive"] = hypervolume(archive(), self.ref, normalize=True)
        if timers is not None:
            row.update(ppl_s=timers.ppl_s, hw_s=timers.hw_s)
        self.history.append(row)
        return row

    def initial(self) -> None:
        t0 = time.perf_counter()
        random.seed(self.s.seed)
        self.problem.generation = 0
        self.pop = [
            _individual([random.randrange(c) for c in self.card], self.fitness_cls)
            for _ in range(self.s.population)
        ]
        self.evaluate(self.pop)
        self.pop = tools.selNSGA2(self.pop, len(self.pop))  # assigns crowding distances
        self.generation = 0
        self.record(0, t0)
        self.save()

    def step(self, gen: int) -> None:
        t0 = time.perf_counter()
        self.problem.generation = gen
        offspring = tools.selTournamentDCD(self.pop, len(self.pop))
        offspring = [self.toolbox.clone(ind) for ind in offspring]
        for a, b in zip(offspring[::2], offspring[1::2], strict=True):
            if random.random() <= self.s.crossover_prob:
                self.toolbox.mate(a, b)
            self.toolbox.mutate(a)
            self.toolbox.mutate(b)
            del a.fitness.values, b.fitness.values
        self.evaluate(offspring)
        self.pop = tools.selNSGA2(self.pop + offspring, self.s.population)
        self.generation = gen
        self.record(gen, t0)
        self.save()

    # ----- checkpoint -------------------------------------------------------------------
    def save(self) -> None:
        if self.ckpt is None:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "settings": asdict(self.s),
            "ref_point": list(self.ref),
            "generation": self.generation,
            "population": [
                {
                    "genes": list(ind),
                    "fitness": list(ind.fitness.values),
                    "crowding_dist": ind.fitness.crowding_dist,
                }
                for ind in self.pop
            ],
            "random_state": random.getstate(),
            "history": self.history,
            "problem": self.problem.state_dict(),
        }
        write_json_atomic(self.ckpt, state)

    def load(self) -> None:
        assert self.ckpt is not None
        try:
            state = json.loads(self.ckpt.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(
                f"cannot read search checkpoint {self.ckpt} ({e}); delete it to start over"
            ) from None
        if state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{self.ckpt} has version {state.get('version')}, "
                f"this code reads {CHECKPOINT_VERSION}"
            )
        saved = dict(state["settings"])
        now = asdict(self.s)
        diff = {
            k: (saved.get(k), now[k]) for k in now if k != "generations" and saved.get(k) != now[k]
        }
        if diff:
            raise CheckpointError(
                f"cannot resume {self.ckpt}: settings differ from the checkpoint's "
                + ", ".join(f"{k}: saved {a} vs now {b}" for k, (a, b) in diff.items())
                + "; rerun with the saved settings or use a new output directory"
            )
        if tuple(state["ref_point"]) != self.ref:
            raise CheckpointError(
                f"cannot resume {self.ckpt}: hypervolume reference point "
                f"changed ({state['ref_point']} vs {list(self.ref)})"
            )
        self.problem.load_state_dict(state["problem"])
        self.pop = []
        for d in state["population"]:
            ind = _individual(d["genes"], self.fitness_cls)
            ind.fitness.values = tuple(d["fitness"])
            ind.fitness.crowding_dist = d["crowding_dist"]
            self.pop.append(ind)
        v, internal, gauss = state["random_state"]
        random.setstate((v, tuple(internal), gauss))
        self.generation = int(state["generation"])
        self.history = list(state["history"])


def evolve(
    problem: EvoProblem,
    settings: Settings,
    ref_point: Sequence[float],
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    on_generation: Callable[[int, dict], None] | None = None,
    progress: bool = True,
    desc: str = "NSGA-II",
) -> Result:
    """Run NSGA-II on `problem`; hypervolume per generation against `ref_point`.

    With `checkpoint`, the state is written atomically after every generation; with
    `resume=True` and an existing checkpoint the run continues from it (a missing file
    starts afresh). `on_generation(gen, history_row)` is called after each checkpoint.
    """
    ckpt = Path(checkpoint) if checkpoint is not None else None
    loop = _Loop(problem, settings, ref_point, ckpt)
    if resume and ckpt is not None and ckpt.exists():
        loop.load()
        log.info("resumed %s at generation %d", ckpt, loop.generation)
    else:
        loop.initial()
        if on_generation is not None:
            on_generation(0, loop.history[-1])
    with tqdm(
        total=settings.generations,
        initial=min(loop.generation, settings.generations),
        desc=desc,
        unit="gen",
        disable=not progress,
        leave=False,
    ) as bar:
        for gen in range(loop.generation + 1, settings.generations + 1):
            loop.step(gen)
            row = loop.history[-1]
            bar.set_postfix(hv=f"{row['hypervolume']:.4f}", front=row["n_front"])
            bar.update(1)
            log.debug("generation %d: %s", gen, row)
            if on_generation is not None:
                on_generation(gen, row)
    return Result(
        genomes=[list(ind) for ind in loop.pop],
        fitness=[tuple(ind.fitness.values) for ind in loop.pop],
        history=loop.history,
        ref_point=loop.ref,
    )
