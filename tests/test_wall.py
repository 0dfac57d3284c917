"""Throughput-wall profiler: attention equivalence, classes, fits, the isolated-case path
(real subprocesses on the tiny supernet, forced failures recorded, resume) and bad input."""

from __future__ import annotations

import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cosearch.space import ArchError, get_space
from cosearch.supernet.model import build_model, causal_attention
from cosearch.wall.protocol import Case, run_isolated
from cosearch.wall.report import classify, fit_exponent, model_summaries, success_rates
from cosearch.wall.sweep import (
    SweepOptions,
    _skip_reason,
    check_checkpoint,
    pareto_archs,
    parse_attention,
    parse_seq,
    read_results,
    resolve_archs,
    run,
)


# ----- attention implementations --------------------------------------------------------------
def test_chunked_attention_equals_dense_uneven_length():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    shape = (2, 50, 3, 8)  # 50 is not a multiple of the chunk: the padding path is used
    q, k, v = (jax.random.normal(kk, shape) for kk in (k1, k2, k3))
    dense = causal_attention(q, k, v, impl="dense")
    chunked = causal_attention(q, k, v, impl="chunked", chunk=16)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(dense), rtol=1e-5, atol=1e-5)


def test_model_outputs_same_with_dense_and_chunked_beyond_chunk():
    space = get_space("tiny")
    L = 260  # longer than the model's chunk of 256 queries
    x = jax.random.randint(jax.random.key(1), (1, L), 0, space.vocab)
    arch = space.smallest()  # one layer: the cheapest compile that still exercises the model
    dense = build_model(space, space.vocab, arch, cutoffs=(16, 40), tail_div=2)
    chunked = build_model(
        space, space.vocab, arch, cutoffs=(16, 40), tail_div=2, attention="chunked"
    )
    params = jax.jit(dense.init)(jax.random.key(0), x[:, :8])
    a = jnp.concatenate(jax.jit(dense.apply)(params, x), -1)
    b = jnp.concatenate(jax.jit(chunked.apply)(params, x), -1)
    assert a.shape == (1, L, space.vocab)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)


# ----- classes, fits, summaries -------------------------------------------------------------
@pytest.mark.parametrize(
    "longest,cls",
    [
        (8192, "High"),
        (1024, "High"),
        (1023, "Medium"),
        (512, "Medium"),
        (511, "Low"),
        (128, "Low"),
        (127, "Very low"),
        (1, "Very low"),
        (None, "Failed"),
        (0, "Failed"),
    ],
)
def test_class_boundaries_of_the_study(longest, cls):
    assert classify(longest) == cls


def test_fit_exponent_recovers_power_laws():
    L = np.array([512, 1024, 2048, 4096])
    assert fit_exponent(L, 3e-6 * L**2) == pytest.approx(2.0)
    assert fit_exponent(L, 7.0 * L) == pytest.approx(1.0)
    assert fit_exponent([1024], [1.0]) is None


def _rec(label, att, L, status, t=None):
    r = {
        "label": label,
        "arch_id": label,
        "attention": att,
        "batch": 1,
        "logits": "all",
        "seq_len": L,
        "status": status,
        "reason": "" if status == "ok" else status,
        "params": 2e6,
        "mem_limit_gb": 4,
    }
    if status == "ok":
        r.update(
            median_s=t,
            tokens_per_s=L / t,
            tokens_per_s_per_M=L / t / 2,
            peak_rss_mb=400.0,
            rss_loaded_mb=300.0,
        )
    return r


def test_summaries_give_classes_walls_and_success_rates():
    recs = [_rec("a", "dense", L, "ok", 1e-6 * L**2) for L in (128, 512, 1024)]
    recs += [
        _rec("a", "dense", 2048, "oom"),
        _rec("b", "dense", 128, "ok", 0.1),
        _rec("b", "dense", 512, "timeout"),
        _rec("b", "dense", 1024, "skipped"),
        _rec("b", "dense", 2048, "skipped"),
    ]
    rows = {r["label"]: r for r in model_summaries(recs)}
    assert rows["a"]["class"] == "High" and rows["a"]["first_fail"] == 2048
    assert rows["a"]["time_exp_all"] == pytest.approx(2.0)
    assert rows["b"]["class"] == "Low" and rows["b"]["first_fail_status"] == "timeout"
    sr = success_rates(recs)["dense"]
    assert sr[128] == (2, 2) and sr[512] == (1, 2) and sr[1024] == (1, 2) and sr[2048] == (0, 2)


def test_skip_after_failure_and_predicted_timeout():
    opts = SweepOptions(timeout_s=90, runs=5, warmup=1)
    meta = {"arch_id": "a", "attention": "dense", "batch": 1, "logits": "all", "seq_len": 4096}
    done = [
        {**_rec("a", "dense", 1024, "ok", 1.0), "load_s": 1, "compile_s": 1},
        {**_rec("a", "dense", 2048, "ok", 4.0), "load_s": 1, "compile_s": 1},
    ]
    # slope 2 from the last two: 16 s per forward x 6 runs + 2 s = 98 s > 90 s
    assert _skip_reason(meta, done, opts).startswith("predicted 98 s > the 90 s timeout")
    assert _skip_reason({**meta, "seq_len": 3000}, done, opts) is None  # 8.6 s x 6 + 2
    oom = [*done[:1], _rec("a", "dense", 2048, "oom")]
    assert _skip_reason(meta, oom, opts).startswith("oom at L=2048")
    assert _skip_reason({**meta, "attention": "chunked"}, oom, opts) is None


# ----- inputs -------------------------------------------------------------------------------
def test_parse_seq_accepts_positive_integers_only():
    assert parse_seq("1024, 128,128") == (128, 1024)
    for bad in ("128,abc", "0", "-5", "1.5", "", "128,,x"):
        with pytest.raises(ValueError, match="positive integer|no sequence"):
            parse_seq(bad)


def test_bad_attention_and_archs():
    assert parse_attention("chunked,dense") == ("chunked", "dense")
    with pytest.raises(ValueError, match="known: dense, chunked"):
        parse_attention("flash")
    space = get_space("tiny")
    with pytest.raises(ArchError, match="outside search space"):
        resolve_archs(space, '{"n_layers":1,"d_model":32,"heads":[3],"d_ffn":[32]}')
    with pytest.raises(ValueError, match="positive integer N"):
        resolve_archs(space, "random:0")
    models = resolve_archs(space, "largest,smallest,random:2,largest", seed=1)
    assert [m.label for m in models][:2] == ["largest", "smallest"]
    assert len({m.arch for m in models}) == len(models)


def test_pareto_file_picks_spread_of_the_front(tmp_path):
    space = get_space("tiny")
    front = [{"arch": space.sample(random.Random(i)).to_dict(), "ppl": 50.0 - i} for i in range(8)]
    path = tmp_path / "pareto.json"
    path.write_text(json.dumps({"front": front}))
    models = pareto_archs(space, path, max_n=3)
    assert 1 <= len(models) <= 3 and all(space.contains(m.arch) for m in models)
    with pytest.raises(FileNotFoundError, match="pareto.json"):
        pareto_archs(space, tmp_path / "missing.json")


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_checkpoint(tmp_path / "nope")
    with pytest.raises(RuntimeError, match="not a cosearch run directory"):
        check_checkpoint(tmp_path)
    from cosearch.profile_wall import main

    assert main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert main(["--checkpoint", str(tmp_path), "--seq", "12x", "--out", str(tmp_path)]) == 2


# ----- the real isolated path ---------------------------------------------------------------
def test_isolated_case_timeout_and_error_are_records(tmp_path, tiny_checkpoint):
    arch = get_space("tiny").smallest().to_dict()
    r = run_isolated(Case(str(tiny_checkpoint), arch, 32), mem_limit_gb=None, timeout_s=0.3)
    assert r["status"] == "timeout" and r["reason"].startswith("over")
    (tmp_path / "config.json").write_text("{}")  # a broken run directory
    r = run_isolated(Case(str(tmp_path), arch, 32), mem_limit_gb=None, timeout_s=60)
    assert r["status"] == "error" and r["stage"] == "baseline" and "KeyError" in r["reason"]


def test_sweep_records_failures_continues_and_resumes(tmp_path, tiny_checkpoint):
    out = tmp_path / "walls"
    base = SweepOptions(
        archs="smallest",
        seq=(64, 128),
        attention=("dense",),
        runs=5,
        timeout_s=600,  # generous: on a loaded machine import + compile alone can take a minute
        hw=("gemmini-64k-256k",),
    )
    # 1) an absurd memory limit: the first case is killed as OOM, the next one is skipped
    #    (longer needs more), and the sweep still finishes with its report
    s = run(tiny_checkpoint, out, SweepOptions(**{**base.__dict__, "mem_limit_gb": 0.02}))
    recs = read_results(out)
    assert [r["status"] for r in recs] == ["oom", "skipped"] and s["run"] == 1
    assert "limit" in recs[0]["reason"] and "L=64" in recs[1]["reason"]
    assert (out / "tables.md").is_file() and (out / "success_rate.png").is_file()
    # 2) retry the failures with room to run: both measured for real
    s = run(
        tiny_checkpoint,
        out,
        SweepOptions(**{**base.__dict__, "mem_limit_gb": 8.0, "retry_failed": True}),
    )
    ok = [r for r in read_results(out) if r["status"] == "ok"]
    assert s["run"] == 2 and len(ok) == 2
    for r in ok:
        assert len(r["times_s"]) == 5 and r["tokens_per_s"] > 0 and r["params"] > 0
        assert r["peak_rss_mb"] >= r["rss_baseline_mb"] > 0 and r["load_s"] > 0
        assert r["prob_sum_last"] == pytest.approx(1.0, abs=1e-4)  # a real distribution
    # 3) resume: every case is finished, nothing runs
    s = run(tiny_checkpoint, out, SweepOptions(**{**base.__dict__, "mem_limit_gb": 8.0}))
    assert s["run"] == 0 and s["resumed"] == 2
    md = (out / "tables.md").read_text()
    assert "| 64 | 100% (1/1)" in md and "| Low |" in md  # longest working length 128
    assert (out / "modelled.csv").read_text().count("gemmini-64k-256k") == 2


# ----- decode scenario ----------------------------------------------------------------------
def test_decode_skips_larger_batches_and_extrapolates_linearly():
    opts = SweepOptions(timeout_s=100, runs=5, warmup=1, scenario="decode")
    meta = {"arch_id": "a", "attention": "dense", "logits": "all", "scenario": "decode"}
    oom = {**_rec("a", "dense", 1024, "oom"), "scenario": "decode", "batch": 4}
    # a larger batch at the same context, or a longer context at a larger batch: skipped
    assert _skip_reason({**meta, "seq_len": 1024, "batch": 16}, [oom], opts).startswith(
        "oom at L=1024, batch 4"
    )
    assert _skip_reason({**meta, "seq_len": 4096, "batch": 4}, [oom], opts).startswith("oom")
    assert _skip_reason({**meta, "seq_len": 4096, "batch": 1}, [oom], opts) is None
    assert _skip_reason({**meta, "seq_len": 1024, "batch": 4}, [], opts) is None
    # a prefill failure says nothing about decode
    assert (
        _skip_reason({**meta, "seq_len": 4096, "batch": 4}, [{**oom, "scenario": "prefill"}], opts)
        is None
    )
    # one working point: decode grows linearly (16 s x 4 x 6 = 384 s), prefill quadratically
    ok = [{**_rec("a", "dense", 1024, "ok", 16.0), "scenario": "decode", "batch": 1}]
    assert _skip_reason({**meta, "seq_len": 4096, "batch": 1}, ok, opts).startswith(
        "predicted 384 s"
    )


def test_decode_summaries_say_memory_or_time():
    from cosearch.wall.report import decode_summaries, wall_kind

    def rec(b, L, status, reason=""):
        r = {**_rec("a", "dense", L, status, 0.01), "batch": b, "scenario": "decode"}
        r.update(reason=reason or r["reason"], kv_cache_mb=b * L / 1024, decode_steps=8)
        return r

    recs = [
        rec(1, 128, "ok"),
        rec(1, 1024, "ok"),
        rec(1, 8192, "timeout", "timeout over 100 s"),
        rec(8, 128, "ok"),
        rec(8, 1024, "oom", "RSS passed the limit"),
        rec(8, 8192, "skipped", "oom at L=1024: longer ..."),
        rec(64, 128, "skipped", "predicted 500 s > the 100 s timeout"),
    ]
    rows = {r["batch"]: r for r in decode_summaries(recs)}
    assert rows[1]["longest_ok"] == 1024 and rows[1]["wall"] == "time"
    assert rows[8]["longest_ok"] == 128 and rows[8]["wall"] == "memory"
    assert rows[64]["longest_ok"] is None and rows[64]["wall"] == "time"
    assert rows[1]["kv_cache_mb"] == 1.0 and rows[1]["forward_mb"] == 100.0
    assert wall_kind(None) == "none"


def test_decode_sweep_measures_cache_and_resumes(tmp_path, tiny_checkpoint):
    out = tmp_path / "decode"
    opts = SweepOptions(
        archs="largest",
        seq=(16,),
        scenario="decode",
        batches=(1, 3),
        steps=4,
        mem_limit_gb=8.0,
        timeout_s=600,
    )
    s = run(tiny_checkpoint, out, opts)
    recs = read_results(out)
    assert s["run"] == 2 and [r["status"] for r in recs] == ["ok", "ok"], recs
    space = get_space("tiny")
    big = space.largest()
    for r in recs:
        assert r["scenario"] == "decode" and r["decode_steps"] == 4
        # [layers, 2, batch, heads, context, d_head] float32
        planned = big.n_layers * 2 * r["batch"] * max(big.heads) * 16 * space.head_dim * 4
        assert r["kv_cache_mb"] == pytest.approx(planned / 2**20)
        assert r["tokens_per_s"] == pytest.approx(r["batch"] * 4 / r["median_s"])
        assert r["prob_sum_last"] == pytest.approx(1.0, abs=1e-4)
    md = (out / "tables.md").read_text()
    assert "Decode walls" in md and (out / "decode_tokens_per_s.png").is_file()
    assert not (out / "modelled.csv").exists()  # the Gemmini view models prefill only
    assert run(tiny_checkpoint, out, opts)["resumed"] == 2
    with pytest.raises(ValueError, match="decode steps"):
        run(tiny_checkpoint, out, SweepOptions(**{**opts.__dict__, "steps": 32}))


def test_profile_wall_decode_flags_are_checked(tmp_path, tiny_checkpoint):
    from cosearch.profile_wall import main

    base = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "o")]
    assert main([*base, "--scenario", "decode", "--seq", "128"]) == 2  # --contexts for decode
    assert main([*base, "--batches", "1,2"]) == 2  # prefill takes --batch
    assert main([*base, "--scenario", "decode", "--batches", "0"]) == 2


def test_decode_case_whose_planned_cache_reaches_the_limit_is_out_of_memory():
    from test_decode import _dense_models

    from cosearch.supernet.decode import cache_bytes
    from cosearch.wall.sweep import planned_cache_mb

    space = get_space("tiny")
    for model, _ in _dense_models(1)[0]:
        arch = space.validate(
            type(space.largest())(len(model.heads), model.d_model, model.heads, model.d_ffn)
        )
        got = planned_cache_mb(arch, space.head_dim, 3, 40)
        assert got == pytest.approx(cache_bytes(model, 3, 40) / 2**20)
    opts = SweepOptions(mem_limit_gb=1.0, scenario="decode")
    meta = {"arch_id": "a", "attention": "dense", "logits": "all", "scenario": "decode"}
    meta.update(seq_len=8192, batch=64)
    reason = _skip_reason({**meta, "kv_cache_mb": 1024.0}, [], opts)
    assert reason.startswith("oom planned") and "1024 MiB" in reason
    from cosearch.wall.report import wall_kind

    assert wall_kind({"status": "skipped", "reason": reason}) == "memory"
    assert _skip_reason({**meta, "kv_cache_mb": 1000.0}, [], opts) is None
    assert _skip_reason({**meta, "kv_cache_mb": 1e6}, [], SweepOptions(mem_limit_gb=None)) is None


def test_timed_runs_release_the_previous_outputs_before_each_call():
    """Peak memory is one forward's: the previous call's outputs (the L x vocab
    log-probabilities at long lengths) must not stay alive during the next call."""
    import weakref

    from cosearch.wall import protocol

    alive_during_call = []
    last = {}

    def compiled(x):
        ref = last.get("ref")
        alive_during_call.append(ref is not None and ref() is not None)
        out = np.ones(4) * x
        last["ref"] = weakref.ref(out)
        return out

    res, args, times = protocol._timed_runs(compiled, (2.0,), "prefill", 3)
    assert alive_during_call == [False, False, False]
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert args == (2.0,) and float(res.sum()) == 8.0
