"""Benchmark: writing one new perplexity score to a study-sized cache, the whole-file JSON
rewrite the evaluator used until session 11 vs the append-only log it uses now
(`cosearch.supernet.score_cache`).

A study's cache holds per-window NLL sums of thousands of archs (the thesis_cpu and
hw_cosearch studies shared one of 128 MB: 11,050 scores on 2,048 tokens, 7,339 on 20,000,
1,993 on 60,000 and 635 on the whole validation split). This builds a made-up cache of that
shape (random numbers, the same window counts), then times, in one process:
- `rewrite`: what one save cost before: read and parse the file (to merge what other
  processes saved), serialise everything, write it atomically;
- `append`: `ScoreCache.put` of one whole-split score (one JSON line under a lock);
- `refresh`: another process taking in that line (`ScoreCache.refresh`);
- `open`: a new process reading the whole cache (once per search).
Prints the figures and saves results/cache_bench.json.

    python experiments/bench/cache_bench.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from benchio import machine, print_and_save  # this folder: scripts run from here

from cosearch.runinfo import write_json_atomic
from cosearch.supernet.score_cache import LOG, ScoreCache, log_line

# (scores, windows per score) of the 128 MB study cache: 2,048 / 20,000 / 60,000 tokens and
# the whole validation split (217,645 tokens in 1,701 windows)
SHAPE = ((11_050, 16), (7_339, 157), (1_993, 469), (635, 1_701))


def fake_scores(scale: float, rng: random.Random) -> dict[str, dict]:
    out = {}
    for tokens_i, (n, windows) in enumerate(SHAPE):
        for i in range(max(1, int(n * scale))):
            out[f"fp|2000|valid|{tokens_i}|arch-{i}"] = {
                "nll": [rng.uniform(500.0, 800.0) for _ in range(windows)],
                "tokens": [128] * windows,
            }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the study cache's size (default 1)"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = ap.parse_args(argv)
    rng = random.Random(0)
    scores = fake_scores(a.scale, rng)
    new = {"nll": [rng.uniform(500.0, 800.0) for _ in range(1_701)], "tokens": [128] * 1_701}
    res: dict = {"machine": machine(), "scale": a.scale, "scores": len(scores)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        snapshot = folder / "ppl_cache.json"
        write_json_atomic(snapshot, scores)
        res["cache_mb"] = round(snapshot.stat().st_size / 1e6, 1)

        t = time.perf_counter()  # the earlier save: read and merge, then rewrite everything
        on_disk = json.loads(snapshot.read_text())
        merged = {**on_disk, **scores, "new": new}
        write_json_atomic(snapshot, merged)
        res["rewrite_s"] = time.perf_counter() - t
        del on_disk, merged
        snapshot.unlink()

        # the same scores as a log (as a study that started with this version has them)
        with open(folder / LOG, "wb") as f:
            for k, v in scores.items():
                f.write(log_line(k, v))
        t = time.perf_counter()
        writer, reader = ScoreCache(folder), ScoreCache(folder)
        res["open_s"] = (time.perf_counter() - t) / 2
        t = time.perf_counter()
        writer.put("new", new)
        res["append_s"] = time.perf_counter() - t
        t = time.perf_counter()
        assert reader.refresh() == 1 and reader["new"] == new
        res["refresh_s"] = time.perf_counter() - t
    res["rewrite_over_append"] = res["rewrite_s"] / res["append_s"]
    print_and_save(res, a.out / "cache_bench.json")


if __name__ == "__main__":
    main()
