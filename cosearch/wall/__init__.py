"""Throughput-wall profiling of the search space's models (`python -m cosearch.profile_wall`).

protocol: one isolated case (subprocess + RSS watchdog); sweep: which cases, resume;
results: the output files; report: classes, success rates, scaling fits, tables and plots,
from those files only; modelled: the Gemmini view.
"""
