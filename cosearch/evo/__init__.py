"""Evolutionary co-search (DEAP NSGA-II) of Transformer architectures and Gemmini configs.

`options` says what a search runs on and for, `problem` what an individual costs, `nsga2`
evolves a population, `rundir` keeps the run directory while it runs, `pareto` computes
fronts and report pieces, `report` writes a finished search's results, and `runner.run`
wires them into one run.
"""

from cosearch.evo.problem import InfeasibleError, SearchError
from cosearch.evo.runner import SearchOptions, run

__all__ = ["InfeasibleError", "SearchError", "SearchOptions", "run"]
