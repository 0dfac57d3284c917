"""Stopping a long job on SIGINT or SIGTERM, so that it saves what it has and resumes.

Python turns SIGINT into a KeyboardInterrupt at the next bytecode, wherever that is; in a
JAX process that is often a garbage-collection callback of XLA's, where the exception is
printed ("Exception ignored in: <function _xla_gc_callback ...>") and dropped, so the job
runs on. `handle_signals()` (the entry points' wrapper, `cosearch.cli.main_wrapper`) makes
both signals record themselves before they raise, and `check()`, called at safe points of
the long loops (every evaluation batch), raises again until the job stops: a swallowed
interrupt costs one batch, not the stop. SIGTERM stops a job the way Ctrl-C does (a batch
system's or `kill`'s stop saves as much).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_requested: list[int] = []  # the signals received since handle_signals() began
_depth = [0]  # nested handle_signals(): the outermost one installs and restores


def _handler(signum, frame) -> None:
    _requested.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def requested() -> int | None:
    """The first stop signal received, or None."""
    return _requested[0] if _requested else None


def check() -> None:
    """Raise KeyboardInterrupt if a stop signal has been received (once raised and
    swallowed, it is raised again here)."""
    if _requested:
        raise KeyboardInterrupt(f"signal {_requested[0]}")


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt and are remembered for `check()`; only
    in the main thread, where handlers can be set (elsewhere: unchanged)."""
    if threading.current_thread() is not threading.main_thread() or _depth[0]:
        yield
        return
    old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    _depth[0] += 1
    try:
        yield
    finally:
        _depth[0] -= 1
        for s, h in old.items():
            signal.signal(s, h)
        _requested.clear()
