"""Shared fixtures: the made-up tiny corpus and a tiny trained supernet (session-scoped)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_DATA = Path(__file__).parent / "data" / "tiny_corpus"
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="session")
def experiment():
    """Loads a script under experiments/ (not a package) as a module:
    `experiment("ranking/run.py")`."""
    import importlib.util

    def load(relpath: str):
        path = EXPERIMENTS / relpath
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load


@pytest.fixture(scope="session")
def tiny_data() -> Path:
    return TINY_DATA


@pytest.fixture(scope="session")
def tiny_config(tiny_data):
    from cosearch.config import get_preset, override

    return override(get_preset("tiny"), [f"data.data_dir={tiny_data}"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config, tmp_path_factory) -> Path:
    """A tiny supernet trained for the preset's few steps (seconds)."""
    from cosearch.supernet.train import run

    workdir = tmp_path_factory.mktemp("tiny_supernet")
    run(tiny_config, workdir)
    return workdir


@pytest.fixture
def evaluate_json(tiny_checkpoint, tiny_data, capsys):
    """Runs `cosearch.evaluate` on the tiny supernet's largest and smallest archs with
    `--json` (after any `extra` arguments); checks that what it printed is what it returned
    and gives back (rows, printed)."""
    import json

    from cosearch.evaluate import main

    def run(*extra: str) -> tuple[list[dict], list[dict]]:
        rows = main(
            [
                "--checkpoint",
                str(tiny_checkpoint),
                "--data-dir",
                str(tiny_data),
                "--archs",
                "largest,smallest",
                *extra,
                "--json",
            ]
        )
        printed = json.loads(capsys.readouterr().out)
        assert printed == json.loads(json.dumps(rows))
        return rows, printed

    return run
