"""Provenance and crash-safe writes shared by every job: the git commit of the code and the
command that ran, checks that an output path can be written before a job starts, and
atomic file writes (temp file in the same directory, fsync, then os.replace), so a crash
never leaves a half-written result, and the repair of an append-only log that a crash cut
mid-line. Nothing else lives here."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from cosearch.errors import OutputPathError

# Files are written with the mode a plain open() would give them (0644 under the usual
# umask 022); mkstemp alone makes them 0600. Read once: os.umask can only be read by setting.
_UMASK = os.umask(0)
os.umask(_UMASK)


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


def git_dirty() -> bool | None:
    """Whether tracked files of that repository differ from HEAD (None if unknown): a
    commit alone does not identify the code that made an artifact when this is True."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def program(module: str | None = None) -> str:
    """How a user runs this entry point: `python -m cosearch.<verb>` for a module of this
    package (from `module`, else from sys.argv[0]), else the script's name."""
    if module is None:
        if not sys.argv or not sys.argv[0]:
            return "python"
        mod = Path(sys.argv[0]).with_suffix("")
        if "cosearch" not in mod.parts:
            return mod.name
        module = ".".join(mod.parts[len(mod.parts) - 1 - mod.parts[::-1].index("cosearch") :])
    return f"python -m {module}" if module.startswith("cosearch") else module


def command() -> str | None:
    """The command line as a user would type it (`python -m module args`), no machine paths."""
    if not sys.argv or not sys.argv[0]:
        return None
    return " ".join([program(), *sys.argv[1:]])


def shown_path(path: str | os.PathLike) -> str:
    """`path` relative to the working directory where it lies under it (what a user typed
    from there; keeps machine paths out of result files), else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` is (or can be created as) a writable directory; creates nothing. Raises
    OutputPathError naming `flag` otherwise, so a job fails before it starts, not after."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(
            f"{flag} '{path}' is a file, not a directory; pass a directory for {flag}"
        )
    _check_creatable(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`path` is (or can be created as) a writable file; creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{flag} '{path}' is a directory; pass a file name for {flag}")
    _check_creatable(path.parent, flag, of=path)
    return path


def _check_creatable(directory: Path, flag: str, of: Path | None = None) -> None:
    base = _first_existing(directory)
    what = f"{flag} '{of or directory}'"
    if not base.is_dir():
        raise OutputPathError(
            f"cannot create {what}: '{base}' is a file, not a directory; choose another {flag}"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"cannot write {what}: no write permission in '{base}'; choose a directory "
            f"you can write for {flag}"
        )


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, newline: str | None = None) -> Iterator[IO[str]]:
    """Open a temp file next to `path` for writing; it replaces `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
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


def drop_partial_line(path: str | os.PathLike) -> None:
    """Cut an append-only log (metrics.jsonl) back to its last complete line: a process
    killed mid-append leaves a fragment that the next append would glue to its own record.
    A missing file is left missing."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        pass
