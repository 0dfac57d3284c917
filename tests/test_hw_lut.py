"""LUTs and lookup: round trip, fallback, strict, resume, CLI, fast path == op-list path."""

import logging
import random
import subprocess
import sys

import pytest

from cosearch import build_lut
from cosearch.hw.build import LutJob, run
from cosearch.hw.gemmini import get_hw
from cosearch.hw.lut import Coster, lut_path, meta_path, read_lut, write_lut
from cosearch.hw.workload import GEMM_CONTEXT, OutputLayer, space_gemm_shapes
from cosearch.space import PRESETS, Arch

HW = "gemmini-64k-256k"


@pytest.fixture()
def cpu_lut(tmp_path):
    build_lut.main(["--preset", "cpu", "--hw", HW, "--lut-dir", str(tmp_path)])
    return tmp_path


def test_build_writes_lut_and_meta(cpu_lut):
    path = lut_path(cpu_lut, "cpu", HW)
    rows = read_lut(path)
    want = {(GEMM_CONTEXT[s[0]], *s[1:]) for s in space_gemm_shapes(PRESETS["cpu"])}
    assert len(rows) == len(want)  # one row per shape and GEMM context
    assert {
        "hw",
        "op",
        "M",
        "K",
        "N",
        "cycles",
        "energy_pJ",
        "backend",
        "regime",
        "victory",
        "tries",
    } <= set(rows[0])
    assert all(r["backend"] == "analytical" and r["hw"] == HW for r in rows)
    import json

    meta = json.loads(meta_path(path).read_text())
    for k in (
        "backend",
        "regime",
        "tool_versions",
        "date_utc",
        "git_commit",
        "job_hash",
        "calibration",
    ):
        assert k in meta
    build_lut.main(
        ["--preset", "cpu", "--hw", HW, "--lut-dir", str(cpu_lut), "--regime", "gemmini-tiler"]
    )
    assert lut_path(cpu_lut, "cpu", HW, "gemmini-tiler").exists()
    meta2 = json.loads(meta_path(path).read_text())
    assert meta2["job_hash"] == meta["job_hash"]  # deterministic job description


def test_lut_round_trip_equals_analytical(cpu_lut):
    sp = PRESETS["cpu"]
    rng = random.Random(0)
    archs = [sp.sample(rng) for _ in range(20)]
    coster = Coster(sp, lut_dir=cpu_lut, backend="lut")
    a = coster.cost_many(archs, HW)
    assert coster.sources()[HW].endswith("gemmini-64k-256k.csv")
    assert coster.sources()["fallbacks"] == "0"
    b = Coster(sp, backend="analytical").cost_many(archs, HW)
    for x, y in zip(a, b, strict=True):
        assert x.energy_pJ == pytest.approx(y.energy_pJ, rel=1e-5)
        assert x.latency_cycles == pytest.approx(y.latency_cycles, rel=1e-5)


def test_resume_skips_finished_rows(cpu_lut):
    path = lut_path(cpu_lut, "cpu", HW)
    rows = read_lut(path)
    rows[0]["energy_pJ"] = 123.0  # sentinel: must survive a resumed run
    kept = rows[:10]
    write_lut(path, kept)
    job = LutJob(hws=(get_hw(HW),), preset="cpu", lut_dir=str(cpu_lut))
    run(job)
    again = read_lut(path)
    assert len(again) == len(rows)
    assert any(r["energy_pJ"] == 123.0 for r in again)
    assert not list(cpu_lut.rglob("*.tmp"))  # atomic writes leave no temp files


def test_missing_shape_falls_back_once_or_fails_strict(cpu_lut, caplog):
    sp = PRESETS["cpu"]
    path = lut_path(cpu_lut, "cpu", HW)
    rows = read_lut(path)
    write_lut(path, [r for r in rows if "lm_head" not in r["op"]])  # drop the output layer
    arch = sp.largest()
    c = Coster(sp, lut_dir=cpu_lut, backend="lut")
    with caplog.at_level(logging.WARNING):
        got = c.cost(arch, HW)
        c2 = c.cost_many([sp.smallest()], HW)
    assert c.fallbacks >= 1
    assert sum("missing" in r.message for r in caplog.records) == 1
    ref = Coster(sp, backend="analytical").cost(arch, HW)
    assert got.energy_pJ == pytest.approx(ref.energy_pJ, rel=1e-5)
    assert c2[0].energy_pJ > 0
    with pytest.raises(KeyError, match="missing"):
        Coster(sp, lut_dir=cpu_lut, backend="lut", strict=True).cost(arch, HW)
    with pytest.raises(FileNotFoundError, match="build_lut"):
        Coster(sp, lut_dir=cpu_lut, backend="lut").cost(arch, "gemmini-16k-16k")


def test_fast_path_equals_op_list_and_totals():
    sp = PRESETS["paper"]
    c = Coster(sp, backend="analytical")
    cfg = get_hw(HW)
    rng = random.Random(2)
    for a in [sp.largest(), sp.smallest()] + [sp.sample(rng) for _ in range(10)]:
        fast = c.cost(a, cfg)
        slow = c._cost_slow(a, cfg)
        assert fast.latency_cycles == pytest.approx(slow.latency_cycles, rel=1e-9)
        assert fast.energy_pJ == pytest.approx(slow.energy_pJ, rel=1e-9)
        assert sum(v[1] for v in fast.breakdown.values()) == pytest.approx(fast.energy_pJ)
        lm = fast.breakdown["lm_head"]
        assert fast.backbone_energy_pJ == pytest.approx(fast.energy_pJ - lm[1])
        assert fast.edp == pytest.approx(fast.energy_pJ * 1e-12 * fast.latency_cycles * 1e-9)
    # an arch outside the choice lists takes the op-list path
    odd = Arch(2, 200, (3, 5), (300, 700))
    assert c.cost(odd, cfg).energy_pJ > 0
    big, small = c.cost(sp.largest(), cfg), c.cost(sp.smallest(), cfg)
    assert big.edp > small.edp


def test_cost_many_matches_one_by_one():
    """The vectorised path the search uses (its speed: experiments/bench/search_bench.py)
    gives the per-arch costs exactly."""
    sp = PRESETS["paper"]
    c = Coster(sp, backend="analytical")
    rng = random.Random(3)
    archs = [sp.sample(rng) for _ in range(40)] + [sp.largest(), sp.smallest()]
    many = c.cost_many(archs, HW)
    for a, m in zip(archs, many, strict=True):
        one = c.cost(a, HW)
        assert m.latency_cycles == pytest.approx(one.latency_cycles, rel=1e-9)
        assert m.energy_pJ == pytest.approx(one.energy_pJ, rel=1e-9)


def test_shapes_out_cli(tmp_path, capsys):
    shapes = tmp_path / "shapes.csv"
    shapes.write_text("M,K,N\n128,768,768\n512,64,512\n")
    out = tmp_path / "out.csv"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cosearch.build_lut",
            "--shapes",
            str(shapes),
            "--out",
            str(out),
            "--hw",
            "gemmini-64k-256k,gemmini-256k-64k",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rows = read_lut(out)
    assert len(rows) == 4 and {r["hw"] for r in rows} == {"gemmini-64k-256k", "gemmini-256k-64k"}
    assert meta_path(out).exists()
    r = subprocess.run(
        [sys.executable, "-m", "cosearch.build_lut", "--shapes", str(shapes), "--hw", HW],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "--out" in r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert build_lut.main(["--shapes", str(bad), "--out", str(out), "--hw", HW]) == 2
    assert "M,K,N" in capsys.readouterr().err


def test_timeloop_backend_without_tools_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "")
    argv = ["--preset", "cpu", "--hw", HW, "--backend", "timeloop", "--lut-dir", str(tmp_path)]
    assert build_lut.main(argv) == 2
    assert "never installs" in capsys.readouterr().err


def test_write_read_preserves_precision(tmp_path):
    rows = [
        {
            "hw": HW,
            "regime": "optimal",
            "op": "x",
            "M": 1,
            "K": 2,
            "N": 3,
            "cycles": 4259584.0,
            "energy_pJ": 4063443.123456,
            "backend": "analytical",
        }
    ]
    p = tmp_path / "t.csv"
    write_lut(p, rows)
    write_lut(p, read_lut(p))
    back = read_lut(p)[0]
    assert back["energy_pJ"] == pytest.approx(4063443.123456, rel=1e-11)
    assert back["cycles"] == 4259584.0


def test_cost_the_trained_model_and_its_attention():
    """The cpu model's adaptive softmax costs far less than a full one; 'triangular' skips
    the attention blocks above the diagonal; both regimes cost the mask."""
    sp = PRESETS["cpu"]
    a = sp.largest()
    for regime in ("optimal", "gemmini-tiler"):
        adaptive = Coster(sp, regime=regime, backend="analytical").cost(a, HW)
        full = Coster(sp, regime=regime, backend="analytical", output=OutputLayer(sp.vocab))
        f = full.cost(a, HW)
        assert adaptive.backbone_energy_pJ == pytest.approx(f.backbone_energy_pJ)
        assert adaptive.breakdown["lm_head"][1] < 0.3 * f.breakdown["lm_head"][1]
        tri = Coster(sp, regime=regime, backend="analytical", causal="triangular").cost(a, HW)
        for k in ("attn_score", "attn_context", "mask"):
            assert tri.breakdown[k][1] < 0.6 * adaptive.breakdown[k][1]
        assert adaptive.breakdown["mask"][1] > 0
    with pytest.raises(ValueError, match="causal"):
        Coster(sp, causal="diagonal")


def test_archs_that_cannot_run_are_marked():
    """paper at L=512: the fused softmax needs a full row of 512 scores in the accumulator
    half, LayerNorm a row of d; 13 of the 22 grid configs cannot run it (cpu at 128: all
    can)."""
    from cosearch.hw.gemmini import DEFAULT_HW_SPACE

    sp = PRESETS["paper"]
    c = Coster(sp, seq_len=512, backend="analytical")
    bad = [h.name for h in DEFAULT_HW_SPACE.configs() if c.cost(sp.largest(), h).violation > 0]
    assert len(bad) == 13 and "gemmini-64k-256k" not in bad and "gemmini-256k-32k" in bad
    why = c.cost(sp.largest(), "gemmini-256k-32k").infeasible
    assert "softmax accumulator" in why and "LayerNorm" in why
    small = c.cost(sp.smallest(), "gemmini-16k-256k")  # d = 384 fits; 512 scores do not
    assert small.violation > 0 and "scratchpad" in small.infeasible
    assert c._cost_slow(sp.largest(), get_hw("gemmini-256k-32k")).infeasible == why
    cpu = Coster(PRESETS["cpu"], backend="analytical")
    assert all(
        cpu.cost(PRESETS["cpu"].largest(), h).violation == 0 for h in DEFAULT_HW_SPACE.configs()
    )
