"""The Timeloop reference's analysis steps (experiments/cost_model_validation/
timeloop_reference.py) on a made-up map.txt and the committed reference tables (no Timeloop
needed)."""

from __future__ import annotations

import pytest

# the DRAM level of a real timeloop-mapper.map.txt (gemmini-64k-16k, 512x2560x576)
MAP_TXT = """
DRAM [ Weights:1474560 (1474560) Inputs:1310720 (1310720) Outputs:294912 (294912) ]
-----------------------------------------------------------------------------------
| for P in [0:8)
|   for C in [0:4)
|     for K in [0:36)

Scratchpad [ Weights:10240 (10240) Inputs:40960 (40960) ]
---------------------------------------------------------
|       for N in [0:1)
|         for K in [0:16) (Spatial-X)
"""


@pytest.fixture(scope="module")
def ref(experiment):
    return experiment("cost_model_validation/timeloop_reference.py")


def test_dram_loops_reads_trips_and_the_innermost_loop(ref):
    # Timeloop's K is the GEMM's N; the last DRAM loop is the innermost
    assert ref._dram_loops(MAP_TXT) == (8, 4, 36, "N")


def test_the_model_costs_timeloops_mapping_within_its_own_mapspace(ref):
    from cosearch.hw.cost_model import mapping_cost

    # Timeloop's mapping above fits the model's buffers, and the model's energy for it is
    # Timeloop's (1,981.2 uJ, results/timeloop_model_misses.csv) within 0.2 %
    r = mapping_cost(512, 2560, 576, "gemmini-64k-16k", p=8, c=4, n=36, inner="N")
    assert abs(r["energy_pJ"] / 1981.17e6 - 1) < 0.002
    assert r["acc_fill"] == 512 * 576 * 3  # partial sums spilled over 4 reduction passes


def test_model_cycles_match_timeloop_on_every_same_mapping_row(ref, tmp_path):
    if not ref.PINNED.exists():
        pytest.skip("no committed timeloop_pinned.csv")
    res = ref.acc_port(tmp_path / "acc_port.csv")
    assert res["rows"] >= 121
    assert res["model_equal"] == res["rows"]
    # before the accumulator-port fix, no row with spilled partial sums matched
    assert res["rows_with_spilled_partial_sums"] > 0
    assert res["spill_before_port_fix_equal"] == 0
