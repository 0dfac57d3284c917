"""A stop signal swallowed where it lands (as in JAX's gc callbacks) still stops the job."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from cosearch import stop
from cosearch.supernet.evaluate import batch_windows


def _swallow(sig: int) -> bool:
    """Send `sig` to this process inside code that drops the KeyboardInterrupt, as the
    callback of JAX's does; True if it was raised (and dropped)."""
    try:
        os.kill(os.getpid(), sig)  # Python runs the handler at the next bytecode
        for _ in range(1000):
            pass
    except KeyboardInterrupt:
        return True
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_signal_is_raised_again_at_the_next_check(sig):
    with stop.handle_signals():
        stop.check()  # nothing received: no raise
        assert _swallow(sig)
        assert stop.requested() == sig
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    # the handlers are restored and the record cleared on leaving
    assert stop.requested() is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_evaluation_stops_between_batches():
    calls = []

    def step(x, y, w):
        calls.append(1)
        if len(calls) == 2:
            assert _swallow(signal.SIGINT)
        return np.ones(2), np.ones(2)

    batches = [(None, None, None)] * 5
    with stop.handle_signals():
        with pytest.raises(KeyboardInterrupt):
            batch_windows(batches, step)
    assert len(calls) == 2  # the third batch never ran
    w = batch_windows(batches, step)  # outside handle_signals: runs to the end
    assert len(calls) == 7 and len(w.nll) == 10


def test_nested_handlers_keep_the_record_for_the_outer_one():
    with stop.handle_signals():
        with stop.handle_signals():
            assert _swallow(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            stop.check()
