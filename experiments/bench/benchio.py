"""What every benchmark here records and how it saves: the machine, a printed table, JSON."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jax


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "device": str(jax.devices()[0]),
        "jax": jax.__version__,
    }


def print_and_save(res: dict, path: Path) -> None:
    """One line per figure, then `res` as JSON at `path` (its folder is created)."""
    for k, v in res.items():
        print(f"{k:30s} {v if not isinstance(v, float) else f'{v:.4g}'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n")
