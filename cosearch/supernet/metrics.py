"""A training run's metrics: `metrics.jsonl` (the record) and TensorBoard event files.

Every record goes to `metrics.jsonl` (one JSON object a line, flushed at once) and its
numbers, as scalars at the record's step, to TensorBoard event files under `tb/` beside it
(tensorboardX), so a long run can be watched with `tensorboard --logdir RUN/tb`. It must not
compute metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)
TB_DIR = "tb"


class MetricsLog:
    def __init__(self, path: Path, part_names: list[str]):
        self.part_names = part_names
        self.file = open(path, "a")
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / TB_DIR))
        except ImportError:  # the jsonl record is what counts; watching is a convenience
            log.warning("tensorboardX is not installed: no TensorBoard event files")
            self.tb = None

    def write(self, rec: dict) -> None:
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        if self.tb is None or "step" not in rec:
            return
        step = rec["step"]
        for key in ("loss", "grad_norm", "tokens_per_s", "lr"):
            if key in rec:
                self.tb.add_scalar(f"train/{key}", rec[key], step)
        for name, value in zip(self.part_names, rec.get("loss_parts", [])):
            self.tb.add_scalar(f"train/loss_{name}", value, step)
        for name, value in rec.get("eval", {}).items():
            self.tb.add_scalar(f"valid_ppl/{name}", value, step)
        self.tb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
