import json
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cosearch.config import get_preset, override
from cosearch.space import PRESETS, Arch, ArchError
from cosearch.supernet.checkpoint import CheckpointError, restore_params
from cosearch.supernet.evaluate import load_evaluator
from cosearch.supernet.extract import extract
from cosearch.supernet.model import (
    arch_masks,
    build_model,
    causal_attention,
    count_params,
    embedding_param_count,
    gathered_nll,
    make_model,
    token_nll,
)
from cosearch.supernet.train import run


def _supernet(space, vocab, cutoffs):
    model = build_model(space, vocab, cutoffs=cutoffs, tail_div=2)
    x = jnp.asarray(np.random.default_rng(0).integers(0, vocab, (2, space.seq_len)))
    params = model.init(jax.random.key(0), x, arch_masks(space, space.largest()))
    # perturb LayerNorm/bias params away from their init so slicing errors would show
    params = jax.tree_util.tree_map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params
    )
    return model, params, x


@pytest.mark.parametrize("cutoffs", [(16, 40), ()])
def test_extracted_subnet_equals_masked_supernet(cutoffs):
    space = PRESETS["tiny"]
    model, params, x = _supernet(space, 47, cutoffs)
    rng = random.Random(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(25)]
    for arch in archs:
        masked = model.apply(params, x, arch_masks(space, arch))
        dense_model, dense_params = extract(space, params, arch, model)
        dense = dense_model.apply(dense_params, x)
        for a, b in zip(masked, dense):
            np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-5)
        # the dense model's size is the space's analytic count plus the embedding
        assert count_params(dense_params) - embedding_param_count(dense_model) == space.param_count(
            arch, embeddings=False
        )


def test_extraction_on_a_wider_space():
    """Same check on a cpu-shaped space (heads of dim 64, several widths), small vocab."""
    from dataclasses import replace

    space = replace(PRESETS["cpu"], seq_len=12, vocab=300)
    model, params, x = _supernet(space, 300, (50, 150))
    rng = random.Random(1)
    for _ in range(4):
        arch = space.sample(rng)
        masked = model.apply(params, x, arch_masks(space, arch))
        dm, dp = extract(space, params, arch, model)
        for a, b in zip(masked, dm.apply(dp, x)):
            np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4)


def test_adaptive_softmax_is_a_distribution_and_gathered_nll_is_exact():
    space = PRESETS["tiny"]
    model, params, x = _supernet(space, 47, (16, 40))
    m = arch_masks(space, space.smallest())
    blocks = model.apply(params, x, m)
    total = sum(jnp.exp(b).sum(-1) for b in blocks)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    y = jnp.roll(x, -1, axis=1)
    full = token_nll(blocks, y, model.clusters.bounds).mean()
    out = model.apply(params, x, y, (x.size, x.size), m, method=type(model).train_outputs)
    np.testing.assert_allclose(gathered_nll(out, y, model.clusters.bounds), full, rtol=1e-5)


def test_chunked_attention_matches_dense():
    k = jax.random.split(jax.random.key(0), 3)
    q, kk, v = (jax.random.normal(s, (2, 37, 3, 8)) for s in k)
    dense = causal_attention(q, kk, v, impl="dense")
    chunked = causal_attention(q, kk, v, impl="chunked", chunk=8)
    np.testing.assert_allclose(dense, chunked, atol=1e-5)


def test_training_lowers_loss_and_writes_a_self_describing_run(tiny_config, tmp_path):
    cfg = override(tiny_config, ["train.steps=30", "train.eval_every=30", "train.log_every=5"])
    run(cfg, tmp_path / "r")
    desc = json.loads((tmp_path / "r" / "config.json").read_text())
    assert desc["config"]["name"] == "tiny" and "git_commit" in desc and desc["seed"] == 0
    recs = [
        json.loads(line)
        for line in (tmp_path / "r" / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    losses = [r["loss_parts"][0] for r in recs if "loss" in r]
    assert losses[-1] < losses[0] - 0.3
    evals = [r for r in recs if "eval" in r]
    assert evals and set(evals[-1]["eval"]) == {"largest", "smallest", "random"}


def test_resume_equals_uninterrupted(tiny_config, tmp_path):
    run(tiny_config, tmp_path / "a")
    run(tiny_config, tmp_path / "b", stop_after=3)  # interrupted after its step-3 checkpoint
    run(tiny_config, tmp_path / "b", resume=True)
    space = tiny_config.space
    model = make_model(tiny_config, 47)
    pa, sa = restore_params(tmp_path / "a", model, space)
    pb, sb = restore_params(tmp_path / "b", model, space)
    assert sa == sb == tiny_config.train.steps
    for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(x, y)


def test_bad_runs_fail_clearly(tiny_config, tiny_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="pass --resume"):
        run(tiny_config, tiny_checkpoint)
    other = override(tiny_config, ["train.lr=0.1"])
    with pytest.raises(CheckpointError, match="config differs"):
        run(other, tiny_checkpoint, resume=True)
    with pytest.raises(CheckpointError, match="not a cosearch run directory"):
        load_evaluator(tmp_path)
    with pytest.raises(CheckpointError, match="trained on search space 'tiny', not 'cpu'"):
        load_evaluator(tiny_checkpoint, expect_space="cpu")
    with pytest.raises(ArchError):
        run(tiny_config, tmp_path / "s", from_scratch=Arch(3, 16, (1,) * 3, (32,) * 3))


def _truncate_chunks(step_dir):
    """Damage a checkpoint step as a full disk or an interrupted copy would: every stored
    chunk file cut to half its size."""
    for f in step_dir.rglob("*"):
        if f.is_file() and f.parent.name == "d":
            with open(f, "r+b") as fh:
                fh.truncate(f.stat().st_size // 2)


def test_corrupt_checkpoint_is_reported(tiny_config, tmp_path, caplog):
    import shutil

    run_dir, ck = tmp_path / "c", tmp_path / "c" / "checkpoints"
    run(tiny_config, run_dir)
    assert sorted(int(d.name) for d in ck.iterdir()) == [5, 6]  # orbax keeps two
    model = make_model(tiny_config, 47)
    good, _ = restore_params(run_dir, model, tiny_config.space)
    # A damaged latest step: evaluation and resuming fall back to step 5, with a warning.
    _truncate_chunks(ck / "6")
    with caplog.at_level("WARNING"):
        assert load_evaluator(run_dir).step == 5
    assert "step 6 in" in caplog.text and "unreadable" in caplog.text
    assert "using step 5" in caplog.text
    run(tiny_config, run_dir, resume=True)  # retrains step 6 over the damaged one
    again, step = restore_params(run_dir, model, tiny_config.space)
    assert step == 6
    for x, y in zip(jax.tree_util.tree_leaves(good), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(x, y)
    # A checkpoint of another model: said so, not "unreadable".
    tied = make_model(override(tiny_config, ["model.tied=true"]), 47)
    with pytest.raises(CheckpointError, match="does not match the model"):
        restore_params(run_dir, tied, tiny_config.space)
    # Nothing readable: one line naming the steps and what to do, no TensorStore dump.
    for d in ck.iterdir():
        _truncate_chunks(d)
    resume = lambda: run(tiny_config, run_dir, resume=True)  # noqa: E731
    for attempt in (lambda: load_evaluator(run_dir), resume):
        with pytest.raises(CheckpointError) as err:
            attempt()
        msg = str(err.value)
        assert "step 6" in msg and "step 5" in msg and "unreadable" in msg, msg
        assert f"delete '{run_dir}' and train again" in msg and "\n" not in msg, msg
        assert "OCDBT" not in msg and "OUT_OF_RANGE" not in msg and "differs" not in msg, msg
    for d in ck.iterdir():  # a step whose parameters are gone altogether
        shutil.rmtree(d / "params")
    with pytest.raises(CheckpointError, match="params/ folder is missing"):
        load_evaluator(run_dir)


def test_evaluator_caches_and_from_scratch(tiny_config, tiny_checkpoint, tmp_path):
    cache = tmp_path / "cache"  # its own file: other tests score on this checkpoint too
    ev = load_evaluator(tiny_checkpoint, cache_dir=cache)
    space = ev.space
    p1 = ev.perplexity(space.largest(), "valid")
    assert 1 < p1 < 500  # a few steps from init: finite, above 1
    assert ev.perplexity(space.largest(), "valid") == p1
    # every score is on disk as soon as it is made: a new process reads it, not re-scores
    other = load_evaluator(tiny_checkpoint, cache_dir=cache)
    assert other.has_windows(space.largest(), "valid")
    assert other.perplexity(space.largest(), "valid") == p1
    # two processes on one folder: each sees what the other scored meanwhile
    ev.perplexity(space.smallest(), "valid", max_tokens=24)
    calls = []
    real = other._float_windows
    other._float_windows = lambda *a: calls.append(a) or real(*a)
    assert other.perplexity(space.smallest(), "valid", 24) == ev.perplexity(
        space.smallest(), "valid", 24
    )
    assert calls == []
    other.perplexity(space.largest(), "test", max_tokens=24)
    assert len(calls) == 1 and ev.has_windows(space.largest(), "test", 24) is False
    mine = []
    ev_real = ev._float_windows
    ev._float_windows = lambda *a: mine.append(a) or ev_real(*a)
    ev.perplexity(space.largest(), "test", max_tokens=24)  # taken from the log, not scored
    assert mine == [] and ev.has_windows(space.largest(), "test", 24)
    # save=False keeps a score in memory only
    ev.perplexity(space.smallest(), "test", max_tokens=16, save=False)
    assert (
        load_evaluator(tiny_checkpoint, cache_dir=cache).has_windows(space.smallest(), "test", 16)
        is False
    )
    run(tiny_config, tmp_path / "fs", from_scratch=space.smallest())
    fs = load_evaluator(tmp_path / "fs")
    assert fs.perplexity(space.smallest()) > 1
    with pytest.raises(CheckpointError, match="from-scratch model"):
        fs.perplexity(space.largest())


def test_two_models_sharing_a_cache_keep_their_own_numbers(tiny_config, tiny_checkpoint, tmp_path):
    # a search caches the supernet's and its from-scratch baseline's windows in one file;
    # the same arch at the same step must not hand one model's numbers to the other
    ev = load_evaluator(tiny_checkpoint, cache_dir=tmp_path / "cache")
    largest = ev.space.largest()
    run(tiny_config, tmp_path / "fs", from_scratch=largest)
    fs = load_evaluator(tmp_path / "fs", cache_dir=tmp_path / "cache")
    assert fs.step == ev.step  # the keys differed only by model before
    a = fs.perplexity(largest, "valid", 24)  # saved first...
    b = ev.perplexity(largest, "valid", 24)  # ...then the supernet's own, not fs's
    ev2 = load_evaluator(tiny_checkpoint, cache_dir=tmp_path / "cache")
    fs2 = load_evaluator(tmp_path / "fs", cache_dir=tmp_path / "cache")
    assert ev.fingerprint != fs.fingerprint and a != b
    assert ev2.perplexity(largest, "valid", 24) == b and fs2.perplexity(largest, "valid", 24) == a


def test_gathered_eval_equals_full_softmax_eval(tiny_checkpoint):
    """The evaluator's tail gathering gives exactly the full-distribution perplexity."""
    from cosearch.data import eval_batches, perplexity

    ev = load_evaluator(tiny_checkpoint)
    arch = ev.space.sample(random.Random(5))
    tot = n = 0.0
    for x, y, w in eval_batches(ev.corpus.valid, 4, ev.space.seq_len):
        blocks = ev.model.apply({"params": ev.params}, x, arch_masks(ev.space, arch))
        tot += float((token_nll(blocks, y, ev.model.clusters.bounds) * w).sum())
        n += float(w.sum())
    assert abs(ev.perplexity(arch, save=False) - perplexity(tot, n)) < 1e-3


def test_long_evaluations_use_the_dense_subnet_with_equal_results(tiny_checkpoint, monkeypatch):
    import cosearch.supernet.evaluate as E

    ev = load_evaluator(tiny_checkpoint)
    ev.scores.clear()
    arch = ev.space.sample(random.Random(9))
    masked = ev.perplexity(arch, "test", save=False)
    monkeypatch.setattr(E, "DENSE_FROM_TOKENS", 1)
    ev2 = load_evaluator(tiny_checkpoint)
    ev2.scores.clear()
    dense = ev2.perplexity(arch, "test", save=False)
    assert abs(masked - dense) < 1e-3 * masked
    # the per-arch compile is dropped after the evaluation (it would pile up in a study)
    assert E.dense_eval_step._cache_size() == 0
    assert E.eval_step._cache_size() > 0  # the bucketed steps stay compiled


def test_export_params_only_loads_the_same(tiny_checkpoint, tmp_path):
    from cosearch.train_supernet import main

    main(["--workdir", str(tiny_checkpoint), "--export", str(tmp_path / "exp")])
    a, b = load_evaluator(tiny_checkpoint), load_evaluator(tmp_path / "exp")
    arch = a.space.smallest()
    assert a.step == b.step
    assert a.perplexity(arch, save=False) == b.perplexity(arch, save=False)
    assert not any(p.name == "state" for p in (tmp_path / "exp").rglob("*"))


def test_extending_a_finished_run_equals_training_longer(tiny_config, tmp_path):
    """--resume --steps N on a finished WSD run restarts from the checkpoint kept at its
    decay start; the stable phase is the same in both schedules, so the result equals a
    run set up for N steps from the start."""
    longer = override(tiny_config, ["train.steps=10"])
    run(longer, tmp_path / "a")
    run(tiny_config, tmp_path / "b")  # 6 steps, decay from step 5
    run(longer, tmp_path / "b", resume=True)
    model = make_model(tiny_config, 47)
    pa, sa = restore_params(tmp_path / "a", model, tiny_config.space)
    pb, sb = restore_params(tmp_path / "b", model, tiny_config.space)
    assert sa == sb == 10
    for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    events = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert {"event": "extend", "from_steps": 6, "to_steps": 10, "restart_step": 5} in events
    desc = json.loads((tmp_path / "b" / "config.json").read_text())
    assert desc["config"]["train"]["steps"] == 10 and desc["extended"][0]["from_steps"] == 6
    with pytest.raises(CheckpointError, match="may only grow"):
        run(tiny_config, tmp_path / "b", resume=True)


def test_resume_of_nothing_is_refused(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="holds no run"):
        run(tiny_config, tmp_path / "empty", resume=True)


def test_untrained_model_predicts_the_unigram(tiny_config):
    """Zero output tables + log-unigram biases: the first prediction is the (add-one)
    unigram distribution at every position, whatever the input."""
    from cosearch.data import load_corpus
    from cosearch.supernet.train import init_state

    corpus = load_corpus(tiny_config.data.data_dir)
    model = make_model(tiny_config, corpus.vocab_size)
    state = init_state(tiny_config, model, corpus.train)
    space = tiny_config.space
    x = corpus.valid[None, : space.seq_len]
    lp = model.apply({"params": state.params}, x, arch_masks(space, space.largest()))
    logp = np.concatenate([np.asarray(b) for b in lp], -1)[0]
    counts = np.bincount(corpus.train, minlength=corpus.vocab_size) + 1.0
    np.testing.assert_allclose(
        logp, np.log(counts / counts.sum())[None].repeat(len(logp), 0), atol=1e-5
    )


def test_configs_saved_before_the_new_recipe_load_as_they_were():
    from cosearch.config import RunConfig

    old = RunConfig.from_dict({"name": "cpu", "model": {"space": "cpu"}, "train": {"lr": 1e-3}})
    assert old.model.tied and old.model.output_bias == "zero"
    assert old.train.schedule == "cosine" and old.train.b2 == 0.999
    new = RunConfig.from_dict(get_preset("cpu").to_dict())
    assert new == get_preset("cpu") and not new.model.tied


def test_training_writes_tensorboard_events(tiny_checkpoint):
    """TensorBoard event files beside metrics.jsonl carry the loss, lr and validation ppl."""
    import struct

    from tensorboardX.proto import event_pb2

    files = list((tiny_checkpoint / "tb").glob("events.out.tfevents.*"))
    assert files
    tags = set()
    for f in files:
        data = f.read_bytes()
        i = 0
        while i < len(data):  # TFRecord: length, crc, payload, crc
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            tags |= {v.tag for v in ev.summary.value}
            i += 12 + n + 4
    assert {"train/loss", "train/lr", "train/loss_largest", "valid_ppl/largest"} <= tags
