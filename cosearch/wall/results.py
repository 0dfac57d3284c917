"""The files of a wall sweep's output directory and how to read them.

Owns their names and formats: `results.jsonl` / `results.csv` (one record per finished
case, appended as it finishes), `run.json` (what the sweep ran on) and `modelled.csv` (the
Gemmini view). The sweep writes through here and the report reads through here, so the
report needs nothing but these files. It must not run or measure anything.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
RUN_JSON = "run.json"
FAILED = ("oom", "timeout", "error", "skipped")
MODELLED_CSV = "modelled.csv"
CSV_COLUMNS = (
    "key",
    "label",
    "arch_id",
    "seq_len",
    "batch",
    "attention",
    "logits",
    "status",
    "reason",
    "params",
    "backbone_params",
    "load_s",
    "compile_s",
    "warmup_s",
    "median_s",
    "min_s",
    "max_s",
    "iqr_s",
    "tokens_per_s",
    "tokens_per_s_per_M",
    "rss_baseline_mb",
    "rss_loaded_mb",
    "peak_rss_mb",
    "peak_device_mb",
    "xla_temp_mb",
    "xla_output_mb",
    "case_wall_s",
    "mem_limit_gb",
    "timeout_s",
    "device",
    "scenario",
    "decode_steps",
    "kv_cache_mb",
)


# ----- results -----------------------------------------------------------------------
def read_results(out: str | Path) -> list[dict]:
    """All records of `results.jsonl` (a torn last line from a killed sweep is ignored)."""
    path = Path(out) / RESULTS_JSONL
    recs = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("ignoring a torn line in %s", path)
    return recs


def latest(records: list[dict]) -> dict[str, dict]:
    """key -> last record (a retried case supersedes its earlier failure)."""
    return {r["key"]: r for r in records}


def append_record(out: Path, rec: dict) -> None:
    with (out / RESULTS_JSONL).open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    csv_path = out / RESULTS_CSV
    new = not csv_path.exists()
    columns = CSV_COLUMNS
    if not new:  # a sweep begun by an older version keeps its header's columns
        with csv_path.open(newline="") as f:
            columns = tuple(next(csv.reader(f), CSV_COLUMNS))
    with csv_path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({k: _fmt(rec.get(k, "")) for k in columns})


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


def read_run(out: str | Path) -> dict:
    """The sweep's `run.json` ({} before the first run)."""
    path = Path(out) / RUN_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


def read_modelled(out: str | Path) -> list[dict]:
    """Rows of `modelled.csv`, numbers converted ([] if there is none)."""
    path = Path(out) / MODELLED_CSV
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            for k, v in r.items():
                if k not in ("label", "arch_id", "hw", "backend"):
                    r[k] = float(v)
            r["seq_len"] = int(r["seq_len"])
            rows.append(r)
    return rows
