"""Throughput-wall profiling of the search space's models (`python -m cosearch.profile_wall`).

protocol: one isolated case (subprocess + RSS watchdog); sweep: which cases, resume;
report: classes, success rates, scaling fits, tables and plots; modelled: the Gemmini view.
"""
