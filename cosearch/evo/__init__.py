"""Evolutionary co-search (DEAP NSGA-II) of Transformer architectures and Gemmini configs.

`problem` says what an individual costs, `nsga2` evolves a population, `pareto` computes
and writes the reports, `runner.run` wires them into one run directory.
"""

from cosearch.evo.problem import InfeasibleError, SearchError
from cosearch.evo.runner import SearchOptions, run

__all__ = ["InfeasibleError", "SearchError", "SearchOptions", "run"]
