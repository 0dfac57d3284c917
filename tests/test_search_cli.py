"""`python -m cosearch.search`: help, clear errors, and a smoke run on the tiny preset
(the tiny supernet of conftest's `tiny_checkpoint`, hardware costed by the analytical model
with an empty LUT directory, or a toy coster if `cosearch.hw.lut` is missing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cosearch.evo.runner as runner
from cosearch.evo.toys import ToyCoster
from cosearch.search import main

DATA = Path(__file__).parent / "data" / "tiny_corpus"


@pytest.fixture()
def costing(monkeypatch, tmp_path) -> list[str]:
    """CLI flags for a toy LUT: the tiny preset's GEMMs on the thesis config, built by
    `cosearch.build_lut` with the analytical model; the toy coster if that is missing."""
    try:
        from cosearch.build_lut import main as build_lut
    except ImportError:
        monkeypatch.setattr(runner, "make_coster", lambda config, opts: ToyCoster(config.space))
        return []
    lut = tmp_path / "lut"
    assert build_lut(["--preset", "tiny", "--hw", "gemmini-64k-256k", "--lut-dir", str(lut)]) == 0
    assert (lut / "tiny" / "gemmini-64k-256k.csv").is_file()
    return ["--backend", "lut", "--strict", "--lut-dir", str(lut)]


def test_help_lists_the_flags():
    out = subprocess.run(
        [sys.executable, "-m", "cosearch.search", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    for flag in (
        "--hw",
        "--checkpoint",
        "--objectives",
        "--max-ppl",
        "--max-latency-ms",
        "--resume",
        "--eval-tokens",
        "--regime",
        "--lut-dir",
        "--strict",
    ):
        assert flag in out.stdout


def test_errors_say_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COSEARCH_DATA", raising=False)
    assert main(["--preset", "tiny", "--hw", "gemmini-1k", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "unknown hardware config 'gemmini-1k'" in err and "gemmini-64k-256k" in err
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--checkpoint",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "train_supernet" in capsys.readouterr().err
    # the committed supernet is the default checkpoint; without data it says how to get it
    assert main(["--hw", "gemmini-64k-256k", "--out", str(tmp_path / "c")]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert main(["--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--population", "10", "--out", str(tmp_path / "c")]) == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_smoke_run_resume_and_wrong_preset(tiny_checkpoint, costing, tmp_path, capsys):
    out = tmp_path / "search"
    base = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(DATA),
        "--quiet",
        "--out",
        str(out),
        "--population",
        "8",
        "--generations",
        "2",
        *costing,
    ]
    assert main(base) == 0, capsys.readouterr().err
    assert "front:" in capsys.readouterr().out
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["preset"] == "tiny" and pareto["front"]
    assert all(f["ppl_valid"] > 1 and f["edp"] > 0 for f in pareto["front"])
    assert (out / "summary.md").is_file() and (out / "ppl_vs_edp.png").is_file()
    if costing:  # the toy LUT was used, not the model
        source = pareto["cost_source"]["gemmini-64k-256k"]
        assert source.endswith("gemmini-64k-256k.csv")
        assert not source.startswith("/") and str(tmp_path) not in source  # no machine paths
    # More generations of the same run, resumed from its checkpoint.
    argv = [a if a != "2" else "3" for a in base]
    assert main([*argv, "--resume"]) == 0, capsys.readouterr().err
    gens = [json.loads(x)["generation"] for x in open(out / "metrics.jsonl")]
    assert gens == [0, 1, 2, 3]
    # A checkpoint of the tiny preset used as the cpu preset.
    wrong = [
        "--preset",
        "cpu",
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(DATA),
        "--quiet",
        "--out",
        str(tmp_path / "x"),
        *costing,
    ]
    assert main(wrong) == 2
    assert "trained on search space 'tiny'" in capsys.readouterr().err
    # A LUT that does not exist: the error names the command that builds it.
    missing = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--data-dir",
        str(DATA),
        "--quiet",
        "--out",
        str(tmp_path / "y"),
        "--backend",
        "lut",
        "--lut-dir",
        str(tmp_path / "no_lut"),
        "--hw",
        "gemmini-256k-64k",
    ]
    assert main(missing) == 2
    assert (
        "python -m cosearch.build_lut --preset tiny --hw gemmini-256k-64k"
        in capsys.readouterr().err
    )
