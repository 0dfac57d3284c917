"""Benchmark: build_lut rows per second on each executor (issue 19) -- the local thread pool
(1 and 2 threads) and a local Ray with 1 and 2 workers -- on the same shape sets:

* Timeloop backend through the stand-in mapper of tests/fake_timeloop.py (it replays a saved
  real timeloop-mapper output after sleeping a fixed time per run, standing in for the
  mapper's search; real runs take 7-50 s), one mapper run per row (--max-tries 1);
* the analytical backend on the whole `paper` space and the 22-config grid.

Ray is started here and timed apart (the job uses the Ray it finds initialised); rows/s
is the job's own time, with the start-up reported beside it. Every executor's table is
checked equal to the local one (all columns but the mapper's wall seconds).

    python experiments/bench/lut_bench.py          # writes results/lut_bench_cpu.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from fake_timeloop import write_fake_tools  # noqa: E402  (the tests' stand-in tools)

from cosearch.hw.build import LutJob, run  # noqa: E402
from cosearch.hw.gemmini import get_hw, parse_hw_list  # noqa: E402
from cosearch.hw.lut import read_lut  # noqa: E402
from cosearch.hw.timeloop import MapperSettings  # noqa: E402

RUNS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def timed(job: LutJob, executor: str, workers: int) -> dict:
    """One job on a fresh table: seconds, rows/s, and (Ray) the start-up seconds."""
    job = dataclasses.replace(job, executor=executor, jobs=workers)
    start_s = 0.0
    if executor == "ray":
        import ray

        for attempt in range(3):  # a busy machine can miss Ray's 30 s node start-up limit
            t = time.perf_counter()
            try:
                ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
                break
            except Exception as e:
                print(f"Ray did not start ({e}); attempt {attempt + 1} of 3")
                ray.shutdown()
        else:
            raise SystemExit("Ray did not start in 3 attempts: the machine is too busy")
        start_s = time.perf_counter() - t
    try:
        t = time.perf_counter()
        paths = run(job)
        secs = time.perf_counter() - t
    finally:
        if executor == "ray":
            ray.shutdown()
    rows = [
        {k: v for k, v in r.items() if k != "mapper_seconds"} for p in paths for r in read_lut(p)
    ]
    return {
        "executor": executor,
        "workers": workers,
        "rows": len(rows),
        "seconds": round(secs, 2),
        "rows_per_s": round(len(rows) / secs, 2),
        "ray_start_s": round(start_s, 2),
        "rows_per_s_with_start": round(len(rows) / (secs + start_s), 2),
        "_rows": rows,
    }


def _ray_version() -> str:
    import ray

    return ray.__version__


def bench(make_job, label: str) -> list[dict]:
    out = []
    for executor, workers in RUNS:
        r = timed(make_job(f"{label}-{executor}{workers}"), executor, workers)
        print(f"{label:10s} {executor:5s} x{workers}: {r['rows']} rows in {r['seconds']} s")
        out.append(r)
    ref = out[0].pop("_rows")
    for r in out[1:]:
        r["rows_equal_to_local"] = r.pop("_rows") == ref
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--mapper-delay-s",
        type=float,
        default=2.0,
        help="stand-in mapper seconds per run (2 s: above the 0.5-3 s per-row overhead of "
        "Python start-ups and YAML on the shared 2-core machine, below the real 7-50 s)",
    )
    p.add_argument("--shapes", type=int, default=8, help="paper shapes for the mapper runs")
    p.add_argument("--hw", default="gemmini-256k-64k,gemmini-64k-256k")
    p.add_argument("--json", default=str(Path(__file__).parent / "results/lut_bench_cpu.json"))
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="lut-bench-"))
    bindir = write_fake_tools(tmp / "bin", delay_s=a.mapper_delay_s)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"  # before Ray starts
    # Ray renices its workers by 15 by default; 0 keeps them at this process's niceness, as
    # the local executor's threads are (else a busy machine starves only the Ray runs)
    os.environ.setdefault("RAY_worker_niceness", "0")

    hws = tuple(get_hw(h) for h in a.hw.split(","))
    paper = LutJob(hws=hws, preset="paper", lut_dir=str(tmp / "unused")).shapes()
    shapes = tmp / "shapes.csv"
    with shapes.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op", "M", "K", "N"])
        w.writerows(paper[:: max(1, len(paper) // a.shapes)][: a.shapes])

    def mapper_job(name: str) -> LutJob:
        return LutJob(
            hws=hws,
            backend="timeloop",
            shapes_file=str(shapes),
            out=str(tmp / f"{name}.csv"),
            workdir=str(tmp / f"work-{name}"),
            settings=MapperSettings(max_tries=1),
        )

    grid = tuple(parse_hw_list("grid"))

    def analytical_job(name: str) -> LutJob:
        return LutJob(hws=grid, preset="paper", lut_dir=str(tmp / name))

    res = {
        "what": "build_lut rows/s per executor on the same shape sets (issue 19)",
        "command": "python experiments/bench/lut_bench.py",
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "cpu_cores": os.cpu_count(),
        "ray": _ray_version(),
        "ray_worker_niceness": os.environ["RAY_worker_niceness"],
        "note": (
            "2 cores, shared with two training jobs running at the same time (load average "
            f"{os.getloadavg()[0]:.1f} at the start): one run each, so figures are noisy "
            "and pessimistic (Python start-ups and YAML cost 0.5-3 s per row there). Ray is "
            "a local instance on this machine, its workers at this process's niceness; its "
            "start-up is timed apart (ray_start_s)."
        ),
        "mapper": (
            f"stand-in timeloop-mapper (tests/fake_timeloop.py): sleeps {a.mapper_delay_s} s, "
            "then replays a saved real Timeloop output; --max-tries 1 (one run per row); the "
            "real mapper takes 7-50 s per GEMM on two cores"
        ),
        "mapper_delay_s": a.mapper_delay_s,
        "timeloop_shapes": f"{a.shapes} paper GEMM shapes (evenly spaced) x {len(hws)} configs",
        "timeloop": bench(mapper_job, "timeloop"),
        "analytical_shapes": f"the paper space at its sequence lengths x {len(grid)} configs",
        "analytical": bench(analytical_job, "analytical"),
    }
    res["load_average_at_end"] = round(os.getloadavg()[0], 1)
    for part in ("timeloop", "analytical"):
        for r in res[part]:
            print(
                f"{part:10s} {r['executor']:5s} x{r['workers']}  {r['rows_per_s']:8.2f} rows/s"
                f"  (with Ray start {r['rows_per_s_with_start']:8.2f})"
            )
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
