"""A search's run directory while it runs: config.json, state/, metrics.jsonl, time.json.

Owns the layout of what a search writes as it goes, the check that a directory may hold
this run (new, or a resumable run of the same flags), and the per-generation bookkeeping
(one metrics line, the search time so far). The result files written at the end are
`report`'s. It must not search.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from cosearch.config import RunConfig, differences
from cosearch.evo.options import REPORT_ONLY, SearchOptions
from cosearch.evo.problem import SearchError
from cosearch.runinfo import (
    check_output_dir,
    command,
    drop_partial_line,
    git_commit,
    write_json_atomic,
)

CONFIG_FILE = "config.json"
STATE_DIR = "state"
METRICS_FILE = "metrics.jsonl"
TIME_FILE = "time.json"


def describe(
    config: RunConfig, options: SearchOptions, checkpoint: str | None, data_dir: str | None
) -> dict:
    """The run's config.json: everything that defines it, and where it came from."""
    return {
        "config": config.to_dict(),
        "options": asdict(options),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "data_dir": data_dir,
        "git_commit": git_commit(),
        "seed": config.search.seed,
        "command": command(),
    }


def check(workdir: Path, desc: dict, resume: bool) -> None:
    """`workdir` can be written and holds no other search (with `resume`: one of the same
    config, options and checkpoint, but for more generations and report-only options)."""
    check_output_dir(workdir, "--out")
    path = workdir / CONFIG_FILE
    if not path.exists():
        if resume:
            raise SearchError(
                f"--resume: '{workdir}' holds no search ({CONFIG_FILE} missing); drop "
                "--resume to start one there"
            )
        return
    if not resume:
        raise SearchError(
            f"'{workdir}' already holds a search; pass --resume to continue it "
            "or choose another --out"
        )
    old = json.loads(path.read_text())
    for key in ("config", "options", "checkpoint"):
        a, b = dict(old.get(key) or {}) if key != "checkpoint" else old.get(key), desc[key]
        if key == "config":  # more generations may be asked of a resumed run
            a = json.loads(json.dumps(a))
            b = json.loads(json.dumps(b))
            a.get("search", {}).pop("generations", None)
            b.get("search", {}).pop("generations", None)
        elif key == "options":  # report-only options may change on resume
            # options added since the run started take their defaults (the old behaviour)
            defaults = json.loads(json.dumps(asdict(SearchOptions())))
            a = {**{k: v for k, v in defaults.items() if k not in a}, **a}
            a = {k: v for k, v in a.items() if k not in REPORT_ONLY}
            b = {k: v for k, v in json.loads(json.dumps(b)).items() if k not in REPORT_ONLY}
        if a != b:
            raise SearchError(
                f"cannot resume '{workdir}': its {key} differs from this run's in "
                f"{differences(a, b)}; rerun with the same flags or a new --out"
            )


class RunDir:
    """A checked run directory, created, with its config.json written."""

    def __init__(self, workdir: str | os.PathLike, desc: dict, resume: bool) -> None:
        self.path = Path(workdir)
        check(self.path, desc, resume)
        (self.path / STATE_DIR).mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / CONFIG_FILE, desc)
        self._time = self.path / STATE_DIR / TIME_FILE
        # search time of earlier sessions of a resumed run, saved with every generation
        self.prior_s = 0.0
        if resume:
            drop_partial_line(self.path / METRICS_FILE)
        if resume and self._time.is_file():
            self.prior_s = float(json.loads(self._time.read_text()).get("search_s", 0.0))

    def state(self, label: str) -> Path:
        """The resumable NSGA-II state of one search (one per hardware choice)."""
        return self.path / STATE_DIR / f"{label}.json"

    def log_generation(self, label: str, row: dict, session_s: float) -> None:
        """One metrics line, and the search time so far (this session's plus earlier)."""
        with open(self.path / METRICS_FILE, "a") as f:
            f.write(json.dumps({"run": label, **row}) + "\n")
        write_json_atomic(self._time, {"search_s": self.prior_s + session_s})
