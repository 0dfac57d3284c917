"""`python -m cosearch.search`: help, clear errors, and a smoke run on the tiny preset
(a tiny supernet trained in the fixture, hardware costed by the analytical model into a
toy LUT directory, or a toy coster until `cosearch.hw.lut` exists)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import cosearch.evo.runner as runner
from cosearch.config import get_preset
from cosearch.evo.toys import ToyCoster
from cosearch.search import main

DATA = Path(__file__).parent / "data" / "tiny_corpus"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    train = pytest.importorskip("cosearch.supernet.train",
                                reason="supernet training (cosearch.supernet.train) missing")
    cfg = get_preset("tiny")
    cfg = replace(cfg, data=replace(cfg.data, data_dir=str(DATA)),
                  # one step without distillation: only compile time matters here
                  train=replace(cfg.train, steps=1, eval_every=1, ckpt_every=1, log_every=1,
                                distill=False, n_random=0))
    workdir = tmp_path_factory.mktemp("tiny_supernet")
    train.run(cfg, workdir)
    return workdir


@pytest.fixture()
def costing(monkeypatch, tmp_path) -> list[str]:
    """CLI flags for the cost tables: the analytical backend into a fresh LUT directory
    if the LUT module exists, else the toy coster patched in."""
    try:
        import cosearch.hw.lut  # noqa: F401
    except ImportError:
        monkeypatch.setattr(runner, "make_coster", lambda config, opts: ToyCoster(config.space))
        return []
    return ["--backend", "analytical", "--lut-dir", str(tmp_path / "lut")]


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "cosearch.search", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for flag in ("--hw", "--checkpoint", "--objectives", "--max-ppl", "--max-latency-ms",
                 "--resume", "--eval-tokens", "--regime", "--lut-dir", "--strict"):
        assert flag in out.stdout


def test_errors_say_what_to_do(tmp_path, capsys):
    assert main(["--preset", "tiny", "--hw", "gemmini-1k", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown hardware config 'gemmini-1k'" in err and "gemmini-64k-256k" in err
    assert main(["--preset", "tiny", "--checkpoint", str(tmp_path / "none"),
                 "--out", str(tmp_path / "b")]) == 2
    assert "train_supernet" in capsys.readouterr().err
    assert main(["--hw", "gemmini-64k-256k"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--population", "10", "--out", str(tmp_path / "c")]) == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_smoke_run_resume_and_wrong_preset(tiny_checkpoint, costing, tmp_path, capsys):
    out = tmp_path / "search"
    base = ["--checkpoint", str(tiny_checkpoint), "--data-dir", str(DATA), "--quiet",
            "--out", str(out), "--population", "8", "--generations", "2", *costing]
    assert main(base) == 0, capsys.readouterr().err
    assert "front:" in capsys.readouterr().out
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["preset"] == "tiny" and pareto["front"]
    assert all(f["ppl_valid"] > 1 and f["edp"] > 0 for f in pareto["front"])
    assert (out / "summary.md").is_file() and (out / "ppl_vs_edp.png").is_file()
    # More generations of the same run, resumed from its checkpoint.
    argv = [a if a != "2" else "3" for a in base]
    assert main([*argv, "--resume"]) == 0, capsys.readouterr().err
    gens = [json.loads(x)["generation"] for x in open(out / "metrics.jsonl")]
    assert gens == [0, 1, 2, 3]
    # A checkpoint of the tiny preset used as the cpu preset.
    wrong = ["--preset", "cpu", "--checkpoint", str(tiny_checkpoint), "--data-dir", str(DATA),
             "--quiet", "--out", str(tmp_path / "x"), *costing]
    assert main(wrong) == 2
    assert "trained on search space 'tiny'" in capsys.readouterr().err
