"""Where a LUT job's work units run: a local thread pool or Ray tasks (`--executor`).

Owns starting or joining the pool or cluster, running `fn(*args)` once per unit and
yielding each unit's result (or its error) as it finishes, and cleaning up. It must not
know what a unit costs or write any file: `cosearch.hw.build` does both. Ray is imported
only when the Ray executor is made (an optional extra: `pip install -e ".[ray]"`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from cosearch.errors import UserError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")

# A Ray task whose worker dies is re-run this many times before its rows count as failed
# (a rerun of the job then retries them).
RAY_MAX_RETRIES = 2
# Ray gives its local node 30 s to start, which a busy machine can miss: start it anew.
LOCAL_START_ATTEMPTS = 3

# (unit index, result, error): exactly one of result and error is meaningful.
Outcome = tuple[int, Any, BaseException | None]


class LocalExecutor:
    """`workers` threads in this process (the work units run subprocesses or numpy)."""

    name = "local"

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)

    def call(self, fn: Callable, *args: Any) -> Any:
        """`fn(*args)` where the units run (here: in this process)."""
        return fn(*args)

    def map_unordered(self, fn: Callable, units: Sequence[tuple]) -> Iterator[Outcome]:
        ex = ThreadPoolExecutor(max_workers=self.workers)
        try:
            futs = {ex.submit(fn, *args): i for i, args in enumerate(units)}
            for fut in as_completed(futs):
                err = fut.exception()
                yield futs[fut], (None if err else fut.result()), err
        finally:  # interrupted: drop the queued units, wait only for the running ones
            ex.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task per unit (1 CPU each) on the cluster at `address`, or on a local Ray
    started for the job with `workers` CPUs. A Ray already initialised in this process
    (e.g. by a test) is used as it is and left running; `address` is then only checked."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                '--executor ray needs Ray, which is not installed: pip install -e ".[ray]" '
                "(or use --executor local)"
            ) from None
        self.ray = ray
        if address is not None:
            _check_reachable(address)
        self.owned = not ray.is_initialized()
        if not self.owned:
            return
        if address is None:
            self._start_local(max(1, workers))
            return
        try:
            ray.init(address=address, logging_level="WARNING")
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(
                f"--ray-address {address}: could not join a Ray cluster there "
                f"({str(e).splitlines()[0]}); give the head node's address as `ray start "
                "--head` printed it (e.g. 10.0.0.1:6379), or leave --ray-address out to "
                "start a local Ray for the job"
            ) from None
        log.info("joined the Ray cluster at %s: %s", address, ray.cluster_resources())

    def _start_local(self, cpus: int, attempts: int = LOCAL_START_ATTEMPTS) -> None:
        for attempt in range(1, attempts + 1):
            try:
                self.ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
                return
            except Exception as e:  # Ray raises a bare Exception when its node does not start
                self.ray.shutdown()
                if attempt == attempts:
                    raise UserError(
                        f"could not start a local Ray for the job in {attempts} attempts "
                        f"({str(e).splitlines()[0]}); on a busy machine retry later, or use "
                        "--executor local"
                    ) from None
                log.warning("local Ray did not start (attempt %d of %d): %s", attempt, attempts, e)

    def call(self, fn: Callable, *args: Any) -> Any:
        """`fn(*args)` as one Ray task: on a worker, where the mapper runs will."""
        try:
            return self.ray.get(self.ray.remote(num_cpus=1)(fn).remote(*args))
        except self.ray.exceptions.RayTaskError as e:
            raise _cause(e) from None

    def map_unordered(self, fn: Callable, units: Sequence[tuple]) -> Iterator[Outcome]:
        ray = self.ray
        task = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES)(fn)
        index = {task.remote(*args): i for i, args in enumerate(units)}
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield index[ref], ray.get(ref), None
                    except ray.exceptions.RayTaskError as e:  # the unit raised
                        yield index[ref], None, _cause(e)
                    except ray.exceptions.RayError as e:  # its worker died (after retries)
                        yield index[ref], None, e
        finally:  # interrupted or failed: stop what still runs on the cluster
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(
    name: str, workers: int = 1, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """The executor `--executor name` asks for (`address` only for Ray)."""
    if name not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got '{name}'")
    if name == "local":
        if address is not None:
            raise UserError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    return RayExecutor(address, workers)


def _cause(e: BaseException) -> BaseException:
    """The exception a Ray task raised, without Ray's wrapper."""
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, BaseException) else e


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(
            f"--ray-address must be HOST:PORT (or ray://HOST:PORT, or auto), got '{address}'"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise UserError(
            f"--ray-address {address}: nothing answers there ({e.strerror or e}); start the "
            "cluster with `ray start --head` and pass the address it prints, or leave "
            "--ray-address out to start a local Ray for the job"
        ) from None
