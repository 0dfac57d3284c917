"""Killed jobs resume to the result of an uninterrupted run.

Training, the search and build_lut run as subprocesses on the tiny preset; each is killed
with SIGKILL at random moments, rerun (with --resume where the command takes it) until it
finishes, and its result compared with an uninterrupted run of the same command: equal
parameters, the same Pareto front, the same table rows. The moments are drawn from
$KILL_SEED (default: a fresh seed, printed with any failure).
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cosearch.runinfo import drop_partial_line

KILLS = 3  # killed attempts per job before the one that is let finish


def _launch(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", *argv],
            stdout=subprocess.DEVNULL,
            stderr=f,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )


def _wait_for(proc: subprocess.Popen, marker: Path | None, timeout: float) -> float:
    """Seconds until `marker` exists (0 without one) or the process ends."""
    t0 = time.perf_counter()
    while marker is not None and not marker.exists() and proc.poll() is None:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{marker} did not appear in {timeout:.0f} s")
        time.sleep(0.02)
    return time.perf_counter() - t0


def _uninterrupted(argv: list[str], marker: Path | None, log: Path) -> float:
    """Run to the end; returns how long it ran after `marker` appeared (the span in which
    the interrupted copy is killed)."""
    proc = _launch(argv, log)
    t0 = time.perf_counter()
    t_marker = _wait_for(proc, marker, 600)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    return time.perf_counter() - t0 - t_marker


def _killed_then_finished(
    argv: list[str], marker: Path | None, span: float, rng: random.Random, log: Path
) -> list[str]:
    """KILLS attempts, each SIGKILLed a random time in [0, span] after `marker` appears,
    then one let finish; returns what happened, for the failure message. Every attempt
    passes --resume once the first one wrote `config.json`, as a person would."""
    events = []
    for attempt in range(KILLS + 1):
        resume = ["--resume"] if marker is not None and marker.exists() else []
        proc = _launch([*argv, *resume], log)
        if attempt == KILLS:
            assert proc.wait(timeout=600) == 0, f"{events}: {log.read_text()[-3000:]}"
            return events
        _wait_for(proc, marker, 600)
        delay = rng.uniform(0, span)
        try:
            proc.wait(timeout=delay)
            events.append(f"finished before the kill at +{delay:.2f} s")
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL: no handler, no cleanup
            proc.wait()
            events.append(f"killed at +{delay:.2f} s")
    return events


def _uninterrupted_and_killed(
    argv: Callable[[Path], list[str]], marker: str | None, tmp_path: Path, rng: random.Random
) -> tuple[Path, Path, list[str]]:
    """Run directories a (uninterrupted) and b (killed and rerun) of `argv(workdir)`; the
    kills fall after `workdir/marker` appears, within the time a needed from there."""
    a, b = tmp_path / "a", tmp_path / "b"
    span = _uninterrupted(argv(a), a / marker if marker else None, tmp_path / "a.log")
    b_marker = b / marker if marker else None
    events = _killed_then_finished(argv(b), b_marker, span, rng, tmp_path / "b.log")
    print(f"{argv(b)[0]}: {'; '.join(events)}")
    return a, b, events


def _assert_json_lines(path: Path) -> None:
    """Every line parses: a record that a kill cut short was dropped on resume."""
    for line in path.read_text().splitlines():
        json.loads(line)


@pytest.fixture()
def rng() -> random.Random:
    seed = int(os.environ.get("KILL_SEED", random.SystemRandom().randrange(10**6)))
    print(f"KILL_SEED={seed}")
    return random.Random(seed)


def test_a_cut_log_loses_only_its_last_partial_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"st')
    drop_partial_line(log)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    drop_partial_line(log)  # whole lines are kept
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    drop_partial_line(tmp_path / "missing.jsonl")
    assert not (tmp_path / "missing.jsonl").exists()


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_parameters(tiny_config, tiny_data, tmp_path, rng):
    import jax
    import numpy as np

    from cosearch.config import override
    from cosearch.supernet.checkpoint import restore_params
    from cosearch.supernet.model import make_model

    sets = ["train.steps=40", "train.ckpt_every=2", "train.eval_every=20", "train.log_every=1"]

    def argv(workdir: Path) -> list[str]:
        flags = ["--data-dir", str(tiny_data), "--workdir", str(workdir), "--set", *sets]
        return ["cosearch.train_supernet", "--preset", "tiny", *flags]

    a, b, events = _uninterrupted_and_killed(argv, "config.json", tmp_path, rng)
    config = override(tiny_config, sets)
    model = make_model(config, 47)
    pa, sa = restore_params(a, model, config.space)
    pb, sb = restore_params(b, model, config.space)
    assert sa == sb == 40, events
    for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=str(events))
    _assert_json_lines(b / "metrics.jsonl")


@pytest.mark.slow
def test_killed_search_resumes_to_the_same_front(tiny_checkpoint, tiny_data, tmp_path, rng):
    search = "cosearch.search --preset tiny --quiet --population 8 --generations 5"
    costs = "--backend analytical --hw gemmini-64k-256k"

    def argv(out: Path) -> list[str]:
        paths = ["--checkpoint", str(tiny_checkpoint), "--data-dir", str(tiny_data)]
        return [*search.split(), *costs.split(), *paths, "--out", str(out)]

    a, b, events = _uninterrupted_and_killed(argv, "config.json", tmp_path, rng)
    front_a = json.loads((a / "pareto.json").read_text())["front"]
    front_b = json.loads((b / "pareto.json").read_text())["front"]
    assert front_a and front_a == front_b, events
    _assert_json_lines(b / "metrics.jsonl")


@pytest.mark.slow
def test_killed_build_lut_resumes_to_the_same_rows(tmp_path, rng):
    def argv(lut: Path) -> list[str]:
        return ["cosearch.build_lut", "--preset", "tiny", "--hw", "grid", "--lut-dir", str(lut)]

    def rows(lut: Path) -> dict[str, list[dict]]:
        return {p.name: list(csv.DictReader(open(p))) for p in sorted(lut.rglob("*.csv"))}

    a, b, events = _uninterrupted_and_killed(argv, None, tmp_path, rng)
    want = rows(a)
    assert len(want) > 10 and rows(b) == want, events
    metas = {p.name for p in b.rglob("*.meta.json")}
    assert metas == {n.replace(".csv", ".meta.json") for n in want}, events
