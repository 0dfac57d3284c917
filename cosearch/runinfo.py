"""Provenance and crash-safe writes shared by every job: the git commit of the code, and
atomic file writes (temp file in the same directory, fsync, then os.replace), so a crash
never leaves a half-written result. Nothing else lives here."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def git_commit() -> str:
    """HEAD of the repository this package runs from, or 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, newline: str | None = None) -> Iterator[IO[str]]:
    """Open a temp file next to `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def write_csv_atomic(
    path: str | os.PathLike, fieldnames: list[str], rows: Iterable[dict], **kw: Any
) -> None:
    with atomic_open(path, newline="") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, **kw)
        w.writeheader()
        w.writerows(rows)
