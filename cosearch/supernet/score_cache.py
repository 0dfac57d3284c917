"""The evaluator's scores on disk: per-window NLL sums by key, shared by parallel processes.

Each new score is appended at once, as one JSON line of `ppl_cache.jsonl`, under an
exclusive `flock`: parallel searches that share the folder interleave whole lines, and a
crash loses nothing already scored. A process takes in what the others appended by reading
only the bytes added since it last looked. `ppl_cache.json`, the earlier format (one JSON
object read, merged and rewritten whole on every save: 13.6 s per save at a study's 122 MB
against 6 ms per append on a loaded 2-core machine, `experiments/bench/cache_bench.py`), is
still read, once, and never written.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SNAPSHOT = "ppl_cache.json"  # the earlier format: read if present, never written
LOG = "ppl_cache.jsonl"  # one {"key": ..., "value": ...} per line, appended


def log_line(key: str, value: dict) -> bytes:
    """One entry of the log, as appended."""
    return (json.dumps({"key": key, "value": value}, separators=(",", ":")) + "\n").encode()


class ScoreCache:
    """Scores of one folder: in memory, and appended to its log as they are made."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.log_path = self.folder / LOG
        self._entries: dict[str, dict] = self._read_snapshot()
        self._offset = 0  # bytes of the log read so far (whole lines only)
        self.refresh()

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __getitem__(self, key: str) -> dict:
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: str, value: dict, *, write: bool = True) -> None:
        """Keep `value` under `key`; with `write`, append it to the log now."""
        self._entries[key] = value
        if write:
            self._append(key, value)

    def clear(self) -> None:
        """Forget the scores held in memory (the log keeps them; benchmarks re-score)."""
        self._entries.clear()

    def refresh(self) -> int:
        """Take in the lines other processes appended since the last look; how many new."""
        try:
            size = self.log_path.stat().st_size
        except OSError:
            return 0
        if size < self._offset:  # the log was replaced: read the new one from its start
            self._offset = 0
        if size == self._offset:
            return 0
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next look
        new = 0
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key, value = rec["key"], rec["value"]
            except (ValueError, KeyError, TypeError):
                log.warning("skipping a corrupt line of %s", self.log_path)
                continue
            if isinstance(value, dict) and key not in self._entries:
                self._entries[key] = value
                new += 1
        self._offset += end
        return new

    def _read_snapshot(self) -> dict[str, dict]:
        path = self.folder / SNAPSHOT
        try:
            cached = json.loads(path.read_text())
        except OSError:
            return {}
        except json.JSONDecodeError:
            log.warning("ignoring corrupt %s", path)
            return {}
        # entries of the first format were bare perplexities: not paired, dropped
        return {k: v for k, v in cached.items() if isinstance(v, dict)}

    def _append(self, key: str, value: dict) -> None:
        line = log_line(key, value)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:  # a read-only folder (e.g. a committed checkpoint) still scores
            log.debug("cannot write %s: %s", self.log_path, e)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # end the line a crashed writer left unfinished
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:  # a full disk: the score stays in memory
            log.warning("cannot append to %s: %s", self.log_path, e)
        finally:
            os.close(fd)
