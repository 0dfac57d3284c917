"""What every benchmark here records and how it saves: the machine, a printed table, JSON;
and the machine's measured matmul peak, against which they state their FLOP rates."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        # other work on the machine when the benchmark started (1-minute load average)
        "load_average_1min": os.getloadavg()[0],
    }


def print_and_save(res: dict, path: Path) -> None:
    """One line per figure, then `res` as JSON at `path` (its folder is created)."""
    for k, v in res.items():
        print(f"{k:30s} {v if not isinstance(v, float) else f'{v:.4g}'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Measured float32 FLOP/s of a large square matmul (the machine's practical peak)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
