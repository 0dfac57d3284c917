"""Gemmini configs: name meaning (pinned), errors, hardware space codec, per-access energies."""

import numpy as np
import pytest

from cosearch.hw.firesim import FIRESIM_DIR, TEST_CSV, TRAIN_CSV
from cosearch.hw.gemmini import (
    DEFAULT_HW_SPACE,
    HW_PRESETS,
    PE_AREA_MM2,
    GemminiConfig,
    HwSearchSpace,
    acc_access_pj,
    energy_table,
    get_hw,
    parse_hw_list,
    sp_access_pj,
)
from cosearch.registry import UnknownNameError


def test_names_pinned():
    thesis = get_hw("gemmini-64k-256k")
    assert (thesis.sp_kib, thesis.acc_kib) == (64, 256)
    stock = get_hw("gemmini-256k-64k")
    assert stock == GemminiConfig()  # Gemmini's defaultConfig
    assert (stock.pe_rows, stock.pe_cols, stock.sp_banks, stock.acc_banks) == (16, 16, 4, 2)
    assert (stock.input_bits, stock.acc_bits, stock.dataflow) == (8, 32, "WS")
    assert "gemmini-64k-256k" in HW_PRESETS and "gemmini-256k-64k" in HW_PRESETS
    assert thesis.name == "gemmini-64k-256k"
    big = get_hw("gemmini-128k-128k-pe32x32")
    assert (big.pe_rows, big.name) == (32, "gemmini-128k-128k-pe32x32")
    assert get_hw("gemmini-48k-80k").acc_kib == 80  # any size parses, not only presets


@pytest.mark.parametrize("bad", ["gemmini-64-256", "gemini-64k-256k", "64k"])
def test_bad_name_lists_presets_and_pattern(bad):
    with pytest.raises(UnknownNameError) as e:
        get_hw(bad)
    msg = str(e.value)
    assert "gemmini-<S>k-<A>k" in msg and "gemmini-64k-256k" in msg and bad in msg


@pytest.mark.parametrize(
    "bad,says",
    [
        ("gemmini-0k-64k", "sizes must be >= 1 KiB"),
        ("gemmini-64k-256k-pe0x0", "at least 1x1"),
        ("gemmini-1k-1k-pe512x512", "must be >= 2 KiB"),
    ],
)
def test_name_of_the_pattern_with_bad_sizes_says_what_is_wrong(bad, says):
    with pytest.raises(ValueError, match=says) as e:
        get_hw(bad)
    assert bad in str(e.value) and "unknown" not in str(e.value)


def test_hw_space_budget_and_codec():
    cfgs = DEFAULT_HW_SPACE.configs()
    names = {c.name for c in cfgs}
    assert {"gemmini-64k-256k", "gemmini-256k-64k"} <= names
    assert all(c.total_sram_kib <= 320 for c in cfgs)
    assert "gemmini-512k-16k" not in names and "gemmini-256k-256k" not in names
    for c in cfgs:
        assert DEFAULT_HW_SPACE.decode(DEFAULT_HW_SPACE.encode(c)) == c
    assert DEFAULT_HW_SPACE.gene_cardinalities == (6, 6, 1)
    g = DEFAULT_HW_SPACE.repair([5, 5, 0])  # 512 + 512 -> within budget
    assert DEFAULT_HW_SPACE.feasible(DEFAULT_HW_SPACE.decode(g))
    with pytest.raises(ValueError):
        DEFAULT_HW_SPACE.encode(get_hw("gemmini-512k-512k"))
    sp = HwSearchSpace(pe=(8, 16, 32), budget_kib=1024)
    assert {c.pe_rows for c in sp.configs()} == {8, 16, 32}
    area = HwSearchSpace(budget_kib=1024, budget_mm2=get_hw("gemmini-64k-256k").area_mm2())
    assert all(c.area_mm2() <= area.budget_mm2 for c in area.configs())
    assert get_hw("gemmini-64k-256k") in area.configs()
    assert area.feasible(area.decode(area.repair([5, 5, 0])))
    assert [c.name for c in parse_hw_list("gemmini-64k-256k,gemmini-256k-64k")] == [
        "gemmini-64k-256k",
        "gemmini-256k-64k",
    ]
    assert len(parse_hw_list("grid")) == len(cfgs)


def test_energy_per_access_matches_table_and_grows_with_size():
    # table points are reproduced exactly (GEMMINI_MODEL.md, Accelergy ERT)
    assert float(sp_access_pj(256)) == pytest.approx(62.51)
    assert float(sp_access_pj(64, write=True)) == pytest.approx(27.03)
    assert float(acc_access_pj(64)) == pytest.approx(4.238)
    assert float(acc_access_pj(256, write=True)) == pytest.approx(7.604)
    sizes = np.array([16, 24, 32, 48, 64, 96, 128, 256, 384, 512, 1024])
    for f in (sp_access_pj, acc_access_pj):
        for write in (False, True):
            e = f(sizes, write=write)
            assert np.all(np.diff(e) > 0), (f.__name__, write, e)
            assert np.all(e > 0)
    # 16 KiB is extrapolated with the power law of 32 -> 64 KiB, not linearly to ~0
    assert 5.0 < float(sp_access_pj(16)) < 16.76
    t = energy_table(get_hw("gemmini-64k-256k"))
    assert t["sp_read_word"] == pytest.approx(28.82 / 16)
    assert t["acc_read"] == pytest.approx(9.365)
    assert t["dram_word"] == 64.0


def test_area_grows_with_sram_and_pe_array():
    assert get_hw("gemmini-64k-64k").area_mm2() < get_hw("gemmini-256k-64k").area_mm2()
    assert get_hw("gemmini-64k-64k").area_mm2() < get_hw("gemmini-64k-256k").area_mm2()
    stock = get_hw("gemmini-256k-64k")
    assert stock.area_mm2() == pytest.approx(stock.sram_area_mm2() + 256 * PE_AREA_MM2)
    big = get_hw("gemmini-256k-64k-pe32x32")  # the PE array is no longer free
    assert big.area_mm2() - big.sram_area_mm2() == pytest.approx(4 * 256 * PE_AREA_MM2)
    assert big.area_mm2() > stock.area_mm2()


@pytest.mark.skipif(not (FIRESIM_DIR / TEST_CSV).exists(), reason="needs ../shared/firesim")
def test_area_matches_dosa_accelergy_areas():
    """DOSA's Accelergy areas (ART) of the 13 Gemmini configs in its FireSim tables: our
    SRAM tables + 400 um^2 per PE within 15 % of each (SRAM sizes are non-powers of two
    there, where CACTI's organisation steps)."""
    import csv

    seen = {}
    for name in (TEST_CSV, TRAIN_CSV):
        with (FIRESIM_DIR / name).open(newline="") as f:
            for r in csv.DictReader(f):
                pe = int(r["arch.meshX"])
                sp = int(r["arch.mem2_entries"]) / 1024
                acc = int(r["arch.mem1_entries"]) * int(r["arch.mem1_instances"]) * 4 / 1024
                seen[(pe, sp, acc)] = float(r["target.area"])
    assert len(seen) == 13
    for (pe, sp, acc), area in seen.items():
        cfg = GemminiConfig(sp_kib=sp, acc_kib=acc, pe_rows=pe, pe_cols=pe)
        assert cfg.area_mm2() == pytest.approx(area, rel=0.15)
