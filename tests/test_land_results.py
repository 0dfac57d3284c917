"""experiments/land_results.py: a study's results brought in without state, cache or paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def mod(experiment):
    return experiment("land_results.py")


def _study(src: Path) -> None:
    (src / "seed0" / "state").mkdir(parents=True)
    (src / "ppl-cache").mkdir()
    cmd = f"python -m cosearch.search --out {src}/seed0 --ppl-cache {src}/ppl-cache"
    (src / "seed0" / "config.json").write_text(json.dumps({"command": cmd}))
    (src / "seed0" / "state" / "gemmini.json").write_text("{}")
    (src / "ppl-cache" / "ppl_cache.json").write_text("{}")
    (src / "seed0" / "ppl_cache.jsonl").write_text("")  # a cache kept in the run's own folder
    (src / "seed0" / "fronts.png").write_bytes(b"\x89PNG" + str(src).encode())
    (src / "table.md").write_text(f"from {src}/seed0\n")


def test_land_copies_results_without_state_cache_or_machine_paths(mod, tmp_path):
    src, dst = tmp_path / "out", tmp_path / "repo" / "results"
    _study(src)
    dst.mkdir(parents=True)
    (dst / "table.md").write_text("old table\n")
    (dst / "history-1").mkdir()
    written = mod.land(src, dst, history="2")
    assert sorted(p.relative_to(dst).as_posix() for p in written) == [
        "seed0/config.json",
        "seed0/fronts.png",
        "table.md",
    ]
    cmd = json.loads((dst / "seed0" / "config.json").read_text())["command"]
    assert str(src) not in cmd and f"--out {dst}/seed0" in cmd
    assert (dst / "table.md").read_text() == f"from {dst}/seed0\n"
    # binary files are copied as they are
    png = (src / "seed0" / "fronts.png").read_bytes()
    assert (dst / "seed0" / "fronts.png").read_bytes() == png
    # the old results moved to history-2; earlier history folders stay where they were
    assert (dst / "history-2" / "table.md").read_text() == "old table\n"
    assert (dst / "history-1").is_dir() and not (dst / "history-2" / "history-1").exists()
    with pytest.raises(SystemExit, match="history-2 exists"):
        mod.land(src, dst, history="2")


def test_land_refuses_what_it_cannot_do(mod, tmp_path):
    with pytest.raises(SystemExit, match="is not a folder"):
        mod.land(tmp_path / "missing", tmp_path / "dst")
    (tmp_path / "empty" / "state").mkdir(parents=True)
    (tmp_path / "empty" / "state" / "x.json").write_text("{}")
    with pytest.raises(SystemExit, match="nothing to copy"):
        mod.land(tmp_path / "empty", tmp_path / "dst")
    with pytest.raises(SystemExit, match="overlap"):
        mod.land(tmp_path, tmp_path / "sub")
    _study(tmp_path / "s")
    listed = mod.land(tmp_path / "s", tmp_path / "d", dry_run=True)
    assert len(listed) == 3 and not (tmp_path / "d").exists()


def test_land_only_takes_the_named_entries(mod, tmp_path):
    src, dst = tmp_path / "out", tmp_path / "results"
    _study(src)
    (src / "seed1" / "state").mkdir(parents=True)  # a seed still running
    (src / "seed1" / "evaluated.csv").write_text("arch\n")
    written = mod.land(src, dst, only=["seed0"])
    assert sorted(p.relative_to(dst).as_posix() for p in written) == [
        "seed0/config.json",
        "seed0/fronts.png",
    ]
    assert not (dst / "seed1").exists() and not (dst / "table.md").exists()
    with pytest.raises(SystemExit, match="--only seed7: no such entry"):
        mod.land(src, dst, only=["seed7"])


def test_land_warns_of_paths_to_other_runs_it_cannot_rewrite(mod, tmp_path, capsys):
    src, dst = tmp_path / "out" / "walls", tmp_path / "results"
    src.mkdir(parents=True)
    other = tmp_path / "out" / "thesis" / "seed0" / "pareto.json"
    (src / "run.json").write_text(json.dumps({"archs": f"pareto:{other}", "out": str(src)}))
    mod.land(src, dst)
    assert "still names a path under" in capsys.readouterr().err
    assert json.loads((dst / "run.json").read_text())["out"] == str(dst)
    (src / "run.json").write_text(json.dumps({"out": str(src)}))
    mod.land(src, tmp_path / "results3")
    assert "warning" not in capsys.readouterr().err


def test_land_rewrites_the_paths_it_is_given(mod, tmp_path, capsys):
    src, dst = tmp_path / "out" / "hw", tmp_path / "results"
    src.mkdir(parents=True)
    cache = tmp_path / "out" / "thesis" / "ppl-cache"
    (src / "config.json").write_text(json.dumps({"command": f"--ppl-cache {cache} --out {src}"}))
    mod.land(src, dst, rewrite={str(cache): "experiments/thesis_cpu/results/ppl-cache"})
    cmd = json.loads((dst / "config.json").read_text())["command"]
    assert cmd == f"--ppl-cache experiments/thesis_cpu/results/ppl-cache --out {dst}"
    assert "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.main([str(src), str(tmp_path / "r2"), "--rewrite", "no-equals-sign"])
    assert "give it as FROM=TO" in capsys.readouterr().err
