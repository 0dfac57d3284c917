"""Wall time of the README's first command, the main job, as a new user runs it.

    python experiments/bench/main_job.py                 # runs it (about 12 min on 2 cores)
    python experiments/bench/main_job.py --record DIR --wall-s S --note "..."

Runs `python -m cosearch.search --hw gemmini-64k-256k` (the embedded default checkpoint and
tables; needs COSEARCH_DATA) in a fresh run directory, times it from outside, and writes
`results/main_job.json`: the wall time, the search's own time split (search, final
re-evaluation, budgets), the budget rows it decided, the machine and the commit; the run's
`summary.md` is copied beside it as `results/main_job_summary.md`. `--record DIR --wall-s S`
writes the same file for a run already timed from outside (e.g. by `/usr/bin/time`),
saying so in the file. Target (issue 16): at most 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchio import machine, print_and_save

from cosearch.runinfo import git_commit

HERE = Path(__file__).resolve().parent
COMMAND = ["python", "-m", "cosearch.search", "--hw", "gemmini-64k-256k"]


def summarise(run_dir: Path, wall_s: float, how: str, note: str | None) -> dict:
    pareto = json.loads((run_dir / "pareto.json").read_text())
    rows = [
        {
            k: r.get(k)
            for k in (
                "baseline",
                "budget",
                "arch",
                "delta_ppl_full",
                "delta_ppl_se",
                "reduction",
                "reduction_ci",
                "re_evaluated",
                "capped",
                "final_tokens",
            )
        }
        for r in pareto.get("edp_reduction", [])
    ]
    return {
        "command": " ".join(COMMAND),
        "wall_s": wall_s,
        "wall_min": wall_s / 60,
        "target_min": 15,
        "timed": how,
        "note": note,
        "cpu_count": os.cpu_count(),
        "search_time_split": pareto.get("time"),
        "front_size": len(pareto.get("front", [])),
        "budgets": rows,
        "machine": machine(),
        "commit": json.loads((run_dir / "config.json").read_text()).get("git_commit")
        or git_commit(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--record", type=Path, help="a run directory already timed from outside")
    p.add_argument("--wall-s", type=float, help="its wall time in seconds (with --record)")
    p.add_argument("--note", help="what the machine was doing meanwhile")
    p.add_argument("--out", type=Path, default=HERE / "results" / "main_job.json")
    a = p.parse_args(argv)
    if (a.record is None) != (a.wall_s is None):
        p.error("--record and --wall-s go together: the run directory and its wall time")
    if a.record is not None:
        if not (a.record / "pareto.json").exists():
            p.error(f"--record {a.record}: no pareto.json there; give a finished search's --out")
        run_dir, wall_s, how = a.record, a.wall_s, "from outside, recorded with --record"
    else:
        if not os.environ.get("COSEARCH_DATA"):
            p.error("set COSEARCH_DATA to the WikiText-2 directory (README, Data)")
        run_dir = Path(tempfile.mkdtemp(prefix="main-job-")) / "run"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *COMMAND[1:], "--out", str(run_dir)], check=True)
        wall_s, how = time.perf_counter() - t0, "by this script around the subprocess"
    res = summarise(run_dir, wall_s, how, a.note)
    print_and_save(res, a.out)
    shutil.copy(run_dir / "summary.md", a.out.with_name("main_job_summary.md"))


if __name__ == "__main__":
    main()
