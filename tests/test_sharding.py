"""Data-parallel training (`--devices`), multi-host flags and bf16 compute.

Several devices are CPU devices forced with XLA_FLAGS, which must be set before JAX starts:
those runs go to a subprocess (`_python`). Comparisons happen here, on the run directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cosearch.config import override
from cosearch.errors import UsageError
from cosearch.supernet.checkpoint import restore_params
from cosearch.supernet.model import arch_masks, gathered_nll, make_model
from cosearch.supernet.train import data_mesh, init_state, run

ROOT = Path(__file__).resolve().parents[1]
FORCE_2 = "--xla_force_host_platform_device_count=2"


def _python(code: str, devices: int = 1, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter at the repository root, with `devices` CPU devices."""
    env = {**os.environ, "XLA_FLAGS": FORCE_2 if devices == 2 else ""}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _records(workdir: Path) -> list[dict]:
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x]


def _params(cfg, workdir: Path):
    params, step = restore_params(workdir, make_model(cfg, 47), cfg.space)
    return jax.tree_util.tree_leaves(params), step


@pytest.fixture(scope="module")
def short_config(tiny_config):
    """4 steps, checkpoints every 2, evaluation only at the end: seconds per run."""
    return override(tiny_config, ["train.steps=4", "train.ckpt_every=2", "train.eval_every=100"])


@pytest.fixture(scope="module")
def two_device_runs(short_config, tmp_path_factory) -> Path:
    """In one process with two CPU devices: the same run on 1 and on 2 devices, and a
    2-device run interrupted after its step-2 checkpoint."""
    out = tmp_path_factory.mktemp("sharding")
    res = _python(
        f"""
        import jax
        from cosearch.config import get_preset, override
        from cosearch.supernet.train import run, train_step
        assert jax.device_count() == 2, jax.devices()
        cfg = override(get_preset("tiny"), {_overrides(short_config)!r})
        run(cfg, {str(out / "one")!r}, devices=1)
        n = train_step._cache_size()
        run(cfg, {str(out / "two")!r}, devices=2)
        assert train_step._cache_size() == n + 1, "the 2-device step compiled more than once"
        run(cfg, {str(out / "cut")!r}, devices=2, stop_after=2)
        """,
        devices=2,
        timeout=3600,  # minutes of CPU; 17 min of wall time on this shared machine
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _overrides(cfg) -> list[str]:
    t = cfg.train
    return [
        f"data.data_dir={cfg.data.data_dir}",
        f"train.steps={t.steps}",
        f"train.ckpt_every={t.ckpt_every}",
        f"train.eval_every={t.eval_every}",
    ]


@pytest.mark.slow
def test_two_devices_train_like_one(short_config, two_device_runs):
    one, two = two_device_runs / "one", two_device_runs / "two"
    (p1, s1), (p2, s2) = _params(short_config, one), _params(short_config, two)
    assert s1 == s2 == 4
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    l1 = [r for r in _records(one) if "loss" in r]
    l2 = [r for r in _records(two) if "loss" in r]
    np.testing.assert_allclose(
        [r["loss_parts"] for r in l1], [r["loss_parts"] for r in l2], rtol=1e-5
    )
    assert {r["devices"] for r in l1} == {1} and {r["devices"] for r in l2} == {2}
    assert json.loads((two / "config.json").read_text())["devices"] == 2


@pytest.mark.slow
def test_checkpoint_of_two_devices_resumes_on_one(short_config, two_device_runs, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(two_device_runs / "cut", cut)
    res = _python(
        f"""
        import jax
        from cosearch.config import get_preset, override
        from cosearch.supernet.train import run
        assert jax.device_count() == 1, jax.devices()
        run(override(get_preset("tiny"), {_overrides(short_config)!r}), {str(cut)!r}, resume=True)
        """,
        devices=1,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (pa, sa), (pc, sc) = _params(short_config, two_device_runs / "one"), _params(short_config, cut)
    assert sa == sc == 4
    for a, b in zip(pa, pc):  # steps 1-2 on 2 devices: equal up to float rounding
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [r["devices"] for r in _records(cut) if "loss" in r] == [2, 1]


def test_devices_are_checked_with_a_fix(tiny_config):
    with pytest.raises(ValueError, match=r"--devices 3: this run sees 1 cpu device\(s\)"):
        data_mesh(3, 4)
    assert data_mesh(None, 4) is None and data_mesh(1, 3) is None  # the single-device path
    from cosearch.train_supernet import main

    with pytest.raises(UsageError, match="--devices 0"):
        main(["--preset", "tiny", "--devices", "0"])
    with pytest.raises(UsageError, match="go together"):
        main(["--preset", "tiny", "--coordinator", "localhost:1234"])


def test_two_devices_refuse_a_batch_they_cannot_split(tiny_data, tmp_path):
    res = _python(
        f"""
        import sys
        from cosearch.cli import main_wrapper
        from cosearch.train_supernet import main
        sys.exit(main_wrapper(main, ["--preset", "tiny", "--data-dir", {str(tiny_data)!r},
            "--workdir", {str(tmp_path / "r")!r}, "--set", "data.batch_size=3"]))
        """,
        devices=2,
    )
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert "--devices 2 does not divide data.batch_size=3" in line, res.stderr
    assert "--set data.batch_size=<a multiple of 2>" in line
    assert not (tmp_path / "r").exists()


def _loss(params, model, x, y, masks):
    out = model.apply(
        {"params": params}, x, y, (x.size, x.size), masks, False, method="train_outputs"
    )
    assert out["head"].dtype == jnp.float32  # log-softmax and loss in float32
    return gathered_nll(out, y, model.clusters.bounds)


def test_bf16_compute_is_close_to_float32_and_keeps_float32_params(tiny_config):
    from cosearch.data import load_corpus, train_batch

    corpus = load_corpus(tiny_config.data.data_dir)
    space = tiny_config.space
    x, y = train_batch(corpus.train, 4, space.seq_len, 0, 0)
    masks = arch_masks(space, space.largest())
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = override(tiny_config, [f"model.compute_dtype={dtype}"])
        model = make_model(cfg, corpus.vocab_size)
        state = init_state(cfg, model, corpus.train)
        params = jax.tree_util.tree_map(  # away from the unigram init: the blocks matter
            lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape),
            state.params,
        )
        loss, grads = jax.jit(jax.value_and_grad(_loss), static_argnums=1)(
            params, model, x, y, masks
        )  # jitted: one compile, not op-by-op dispatch (minutes here)
        losses[dtype] = float(loss)
        assert {g.dtype for g in jax.tree_util.tree_leaves(grads)} == {jnp.dtype("float32")}
    assert np.isfinite(losses["bfloat16"])
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=1e-2)
    assert losses["bfloat16"] != losses["float32"]  # bf16 really ran


def test_a_run_saved_before_compute_dtype_resumes(tiny_config, tiny_checkpoint, tmp_path):
    """config.json written by the previous version lacks model.compute_dtype: it resumes
    (float32, as it was trained), while a real config change is still refused."""
    old = tmp_path / "old"
    shutil.copytree(tiny_checkpoint, old)
    desc = json.loads((old / "config.json").read_text())
    del desc["config"]["model"]["compute_dtype"]
    del desc["devices"]
    (old / "config.json").write_text(json.dumps(desc))
    assert run(tiny_config, old, resume=True) == {}  # finished: nothing left to train
    from cosearch.supernet.checkpoint import CheckpointError

    bf16 = override(tiny_config, ["model.compute_dtype=bfloat16"])
    with pytest.raises(CheckpointError, match='model.compute_dtype: saved "float32"'):
        run(bf16, old, resume=True)


def test_compute_dtype_is_checked(tiny_config):
    with pytest.raises(ValueError, match="model.compute_dtype='float16': expected one of"):
        override(tiny_config, ["model.compute_dtype=float16"])


def _resumed(res: subprocess.CompletedProcess) -> list[str]:
    """The commands that run.sh echoed (`+ ...`) with --resume."""
    return [x for x in res.stderr.splitlines() if x.startswith("+ ") and "--resume" in x]


@pytest.mark.slow
def test_paper_gpu_script_runs_end_to_end_on_tiny(tiny_data, tmp_path):
    """experiments/paper_gpu/run.sh at the tiny preset: both trainings, the test-split
    evaluations, one short search and the thesis table, then a rerun that resumes all."""
    env = {
        **os.environ,
        "XLA_FLAGS": "",
        "COSEARCH_DATA": str(tiny_data),
        "PRESET": "tiny",
        "OUT": str(tmp_path / "out"),
        "SEEDS": "0",
        "SET": "train.steps=2 train.eval_every=100",
        "EVAL_TOKENS": "0",
    }
    script = ROOT / "experiments" / "paper_gpu" / "run.sh"
    args = ["bash", str(script), "--population", "8", "--generations", "1"]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "out"
    assert json.loads((out / "test_scratch.json").read_text())[0]["ppl"] > 1
    assert len(json.loads((out / "test_supernet.json").read_text())) == 2
    assert (out / "search" / "table.md").is_file()
    assert not _resumed(res)  # nothing to resume the first time
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(_resumed(again)) == 3  # both trainings and the search resumed


@pytest.mark.slow
def test_two_processes_train_as_one_multi_host_run(tiny_data, tmp_path):
    """--coordinator/--num-processes/--process-id: two processes on this host (one CPU
    device each) join one 2-device mesh; process 0 alone writes the run's files, and the
    loss equals a single device's on the same global batch."""
    port = 20000 + os.getpid() % 20000
    argv = [sys.executable, "-m", "cosearch.train_supernet", "--preset", "tiny"]
    argv += ["--data-dir", str(tiny_data), "--steps", "2", "--set", "train.eval_every=100"]
    argv += ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    env = {**os.environ, "XLA_FLAGS": ""}

    def start(i: int, workdir: Path) -> subprocess.Popen:
        cmd = [*argv, "--process-id", str(i), "--workdir", str(workdir)]
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)

    procs = [start(i, tmp_path / "multi") for i in range(2)]
    errs = [p.communicate(timeout=1800)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    one = subprocess.run(
        [*argv[:9], "--workdir", str(tmp_path / "one")], cwd=ROOT, env=env, timeout=1800
    )
    assert one.returncode == 0
    multi, single = _records(tmp_path / "multi"), _records(tmp_path / "one")
    assert [r["devices"] for r in multi if "loss" in r] == [2]
    np.testing.assert_allclose(multi[0]["loss_parts"], single[0]["loss_parts"], rtol=1e-5)
