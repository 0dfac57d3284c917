"""Serving scenarios: presets and overrides, the workloads of a decode step and a chat
(MACs equal a direct count, KV-cache traffic), and their costs (a chat costs its prefill
plus every decode step; fast path == op-list path; LUTs per scenario)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cosearch.errors import UserError
from cosearch.hw.cost_model import gemm_cost
from cosearch.hw.gemmini import get_hw
from cosearch.hw.lut import Coster, lut_path
from cosearch.hw.workload import (
    OutputLayer,
    kv_cache_bytes,
    phase_ops,
    scenario_ops,
    space_gemm_shapes,
)
from cosearch.registry import UnknownNameError
from cosearch.scenario import PRESETS as SCENARIOS
from cosearch.scenario import Phase, Scenario, get_scenario
from cosearch.space import PRESETS, Arch

SP = PRESETS["cpu"]
HD = SP.head_dim
HW = "gemmini-64k-256k"
DATA = Path(__file__).parent / "data" / "tiny_corpus"


def _archs(n: int = 6) -> list[Arch]:
    rng = random.Random(3)
    return [SP.largest(), SP.smallest()] + [SP.sample(rng) for _ in range(n)]


def _direct_macs(arch: Arch, out: OutputLayer, kind: str, b: int, n: int, c: int, last: bool):
    """MACs of one pass counted from the model's definition: `n` new tokens of `b`
    sequences attending over `c` keys (prefill: n = c = L)."""
    d, total = arch.d_model, 0
    for h, f in zip(arch.heads, arch.d_ffn, strict=True):
        a = HD * h
        total += b * n * (3 * d * a + a * d + 2 * d * f)  # Q, K, V, output, FFN
        total += b * h * 2 * n * c * HD  # scores and context, per sequence and head
    rows = b if last else b * n
    return total + sum(M * K * N for M, K, N in out.gemms(rows, d))


def test_presets_and_overrides():
    assert set(SCENARIOS) == {"prefill", "decode", "chat"}
    assert get_scenario(None) == get_scenario("prefill") == Scenario()
    assert Scenario().is_default
    s = get_scenario("decode:batch=8,context=512")
    assert (s.kind, s.batch, s.context) == ("decode", 8, 512)
    assert s.tag(128) == "decode-b8-c512"
    chat = get_scenario("chat").resolve(SP.seq_len)
    assert (chat.prompt, chat.generate) == (64, 64)
    assert "per chat request" in chat.unit(SP.seq_len)
    with pytest.raises(UnknownNameError, match="chat, decode, prefill"):
        get_scenario("serve")
    with pytest.raises(UserError, match="field=value"):
        get_scenario("decode:beam=4")
    with pytest.raises(UserError, match="integer"):
        get_scenario("decode:batch=many")
    with pytest.raises(UserError, match=">= 1"):
        get_scenario("decode:batch=0")


def test_chat_phases():
    ph = get_scenario("chat:prompt=10,generate=4").phases(SP.seq_len)
    assert ph[0] == Phase("prefill", 1, 10, 10, "last")
    assert [p.context for p in ph[1:]] == [11, 12, 13, 14]
    assert all(p.kind == "decode" and p.rows == 1 for p in ph[1:])
    assert all(p.writes_cache for p in ph)
    assert not get_scenario("prefill").phases(SP.seq_len)[0].writes_cache


@pytest.mark.parametrize("output", ["adaptive", "full"])
def test_macs_equal_a_direct_count(output):
    out = OutputLayer(SP.vocab) if output == "full" else None
    ref_out = OutputLayer(SP.vocab) if output == "full" else Coster(SP).output
    for a in _archs():
        for b, c in ((1, 128), (4, 37)):
            ops = phase_ops(a, SP, Phase("decode", b, 1, c, "last"), output=out)
            got = sum(o.macs for o in ops)
            assert got == _direct_macs(a, ref_out, "decode", b, 1, c, True)
        for b, L, logits in ((1, 128, "all"), (3, 50, "last")):
            ops = phase_ops(a, SP, Phase("prefill", b, L, L, logits), output=out)
            got = sum(o.macs for o in ops)
            assert got == _direct_macs(a, ref_out, "prefill", b, L, L, logits == "last")
        chat = scenario_ops(a, SP, get_scenario("chat:prompt=20,generate=5"), output=out)
        want = _direct_macs(a, ref_out, "prefill", 1, 20, 20, True) + sum(
            _direct_macs(a, ref_out, "decode", 1, 1, 20 + i + 1, True) for i in range(5)
        )
        assert sum(o.macs for ops in chat for o in ops) == want


def test_kv_cache_traffic():
    a = SP.largest()
    ph = Phase("decode", 2, 1, 100, "last")
    ops = phase_ops(a, SP, ph)
    kv = kv_cache_bytes(a, SP, ph)
    d_kv = [HD * h for h in a.heads]
    assert kv["kv_read"] == sum(2 * 100 * x * 2 for x in d_kv)
    assert kv["kv_write"] == sum(2 * x * 2 for x in d_kv)
    assert sum(o.elements for o in ops if o.kind == "kv_write") == kv["kv_write"]
    # the KV reads are the B operands of the cache GEMVs, streamed from DRAM (tiler regime)
    reads = 0.0
    for o in ops:
        if o.kind in ("kv_score", "kv_context"):
            c = gemm_cost(*o.shape, HW, regime="gemmini-tiler", context=o.context)
            assert c["dram_bytes"][0] >= o.K * o.N  # B from DRAM, A (the query) cached
            reads += o.count * o.K * o.N
    assert reads == kv["kv_read"]
    # no mask in decode; the default prefill keeps no cache
    assert not any(o.kind == "mask" for o in ops)
    assert not any(o.kind == "kv_write" for o in phase_ops(a, SP, Phase("prefill", 1, 8, 8)))


@pytest.mark.parametrize("regime", ["optimal", "gemmini-tiler"])
def test_chat_costs_a_prefill_plus_every_decode_step(regime):
    p, g = 24, 6
    kw = dict(regime=regime, backend="analytical")
    chat = Coster(SP, scenario=f"chat:prompt={p},generate={g}", **kw)
    pre = Coster(SP, scenario=f"prefill:seq_len={p},logits=last", **kw)
    steps = [Coster(SP, scenario=f"decode:context={p + i + 1}", **kw) for i in range(g)]
    for hw in ("gemmini-64k-256k", "gemmini-256k-64k"):
        archs = _archs()
        got = chat.cost_many(archs, hw)
        ref = pre.cost_many(archs, hw)
        parts = [s.cost_many(archs, hw) for s in steps]
        for i, c in enumerate(got):
            lat = ref[i].latency_cycles + sum(s[i].latency_cycles for s in parts)
            en = ref[i].energy_pJ + sum(s[i].energy_pJ for s in parts)
            assert c.latency_cycles == pytest.approx(lat, rel=1e-12)
            assert c.energy_pJ == pytest.approx(en, rel=1e-12)
            kv = ref[i].breakdown["kv_write"][1] + sum(s[i].breakdown["kv_write"][1] for s in parts)
            assert c.breakdown["kv_write"][1] == pytest.approx(kv, rel=1e-12)


@pytest.mark.parametrize("scenario", ["decode:batch=3,context=77", "chat:prompt=16,generate=3"])
@pytest.mark.parametrize("regime", ["optimal", "gemmini-tiler"])
def test_fast_path_equals_op_list_path(scenario, regime):
    c = Coster(SP, scenario=scenario, regime=regime, backend="analytical")
    for a in _archs():
        for hw in ("gemmini-64k-256k", "gemmini-16k-128k"):
            fast = c.cost_many([a], hw)[0]
            slow = c._cost_slow(a, get_hw(hw))
            assert fast.latency_cycles == pytest.approx(slow.latency_cycles, rel=1e-9)
            assert fast.energy_pJ == pytest.approx(slow.energy_pJ, rel=1e-9)
            for k, v in slow.breakdown.items():
                assert fast.breakdown[k][1] == pytest.approx(v[1], rel=1e-9), k


def test_default_scenario_is_todays_prefill():
    a = _archs()
    for regime in ("optimal", "gemmini-tiler"):
        old = Coster(SP, regime=regime).cost_many(a, HW)
        new = Coster(SP, regime=regime, scenario="prefill").cost_many(a, HW)
        assert [(x.latency_cycles, x.energy_pJ) for x in old] == [
            (x.latency_cycles, x.energy_pJ) for x in new
        ]
        assert "kv_write" not in old[0].breakdown and "kv_score" not in old[0].breakdown
    with pytest.raises(ValueError, match="seq_len applies to prefill"):
        Coster(SP, seq_len=64, scenario="decode")


def test_decode_step_is_memory_bound_and_grows_with_context():
    a = SP.largest()
    short = Coster(SP, scenario="decode:context=16", regime="gemmini-tiler").cost(a, HW)
    long = Coster(SP, scenario="decode:context=128", regime="gemmini-tiler").cost(a, HW)
    assert long.latency_cycles > short.latency_cycles
    # 8x the keys; each GEMV also pays a fixed tiled_matmul call overhead (SHIPPED_TILER)
    assert long.breakdown["kv_score"][0] > 2 * short.breakdown["kv_score"][0]
    macs = sum(o.macs for o in phase_ops(a, SP, Phase("decode", 1, 1, 128, "last")))
    assert macs / (long.latency_cycles * 256) < 0.05  # under 5 % of the 16x16 array's peak


def test_scenario_lut_build_and_lookup(tmp_path):
    from cosearch.hw.build import LutJob, run

    job = LutJob(
        hws=(get_hw(HW),),
        preset="cpu",
        regime="gemmini-tiler",
        lut_dir=str(tmp_path),
        scenario=get_scenario("chat:prompt=8,generate=3"),
    )
    (path,) = run(job)
    tag = "chat-b1-p8-g3"
    assert path == lut_path(tmp_path, "cpu", HW, "gemmini-tiler", scenario_tag=tag)
    meta = json.loads(path.with_name(f"{HW}.meta.json").read_text())
    assert meta["scenario"]["tag"] == tag and meta["scenario"]["kind"] == "chat"
    want = space_gemm_shapes(SP, scenario=get_scenario("chat:prompt=8,generate=3"))
    assert {("kv_score", 1, HD, 11), ("kv_context", 1, 11, HD)} <= set(want)
    lut = Coster(
        SP,
        scenario="chat:prompt=8,generate=3",
        regime="gemmini-tiler",
        lut_dir=tmp_path,
        backend="lut",
        strict=True,
    )
    model = Coster(
        SP, scenario="chat:prompt=8,generate=3", regime="gemmini-tiler", backend="analytical"
    )
    for x, y in zip(lut.cost_many(_archs(), HW), model.cost_many(_archs(), HW), strict=True):
        assert x.energy_pJ == pytest.approx(y.energy_pJ, rel=1e-9)
    assert lut.fallbacks == 0
    assert lut.table_for(get_hw(HW)).path == path


@pytest.mark.slow  # trains the tiny supernet and runs a search (minutes on 2 busy cores)
def test_search_per_scenario(tiny_checkpoint, tmp_path, capsys):
    from cosearch.build_lut import main as build_lut
    from cosearch.search import main as search

    lut = tmp_path / "lut"
    hw = ["--hw", "gemmini-64k-256k"]
    assert build_lut(["--preset", "tiny", *hw, "--lut-dir", str(lut), "--scenario", "chat"]) == 0
    assert (lut / "tiny" / "chat-b1-p8-g8" / "gemmini-64k-256k.csv").is_file()
    base = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(DATA),
        "--quiet",
        "--population",
        "8",
        "--generations",
        "1",
        "--no-final-eval",
        *hw,
        "--backend",
        "lut",
        "--strict",
        "--lut-dir",
        str(lut),
    ]
    out = tmp_path / "chat"
    assert search([*base, "--scenario", "chat", "--out", str(out)]) == 0, capsys.readouterr().err
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["scenario"]["tag"] == "chat-b1-p8-g8"
    assert pareto["objective_unit"].startswith("latency, energy and EDP per chat request")
    assert "chat-b1-p8-g8" in (out / "summary.md").read_text()
    # a decode step costs less than a whole request, on the same archs
    ref = Coster(PRESETS["tiny"], scenario="decode", backend="analytical")
    for f in pareto["front"]:
        assert f["edp"] > ref.cost(Arch.from_dict(f["arch"]), "gemmini-64k-256k").edp
    assert search([*base, "--scenario", "serve", "--out", str(tmp_path / "x")]) == 2
    assert "--scenario: unknown scenario 'serve'" in capsys.readouterr().err
    # no LUT of the scenario: the error says how to build it
    assert search([*base, "--scenario", "decode", "--out", str(tmp_path / "y")]) == 2
    assert "--scenario decode" in capsys.readouterr().err
