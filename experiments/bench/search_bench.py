"""Benchmark of the co-search: hardware-costing throughput and the time split of a full
NSGA-II run (perplexity evaluation vs hardware costing vs DEAP and bookkeeping).

    python experiments/bench/search_bench.py --checkpoint runs/supernet-cpu --data-dir DIR
    python experiments/bench/search_bench.py --toy-ppl      # no supernet: costing + DEAP only

Prints the numbers and writes them as JSON (--json). Targets (issue 6): a 40 x 40 search on
the `cpu` preset within 20 minutes on 2 cores; hardware costing >= 10,000 archs/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

from cosearch.config import get_preset
from cosearch.evo import SearchOptions, run
from cosearch.evo.problem import Problem
from cosearch.evo.toys import ToyEvaluator
from cosearch.hw.gemmini import get_hw
from cosearch.hw.lut import Coster


def costing_throughput(preset: str, hw_name: str, n: int, seed: int = 0, repeats: int = 3) -> dict:
    """Archs per second of the LUT coster: `cost_many` in one batch and in generation-sized
    batches of 40, and through the search problem in batches of 40 (decode, cache,
    objectives; perplexity stubbed). Best of `repeats`: the machine is shared."""
    cfg = get_preset(preset)
    space, hw = cfg.space, get_hw(hw_name)
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n)]
    genomes = [space.encode(a) for a in archs]
    coster = Coster(space)
    coster.cost_many(archs[:8], hw)  # builds the per-choice tables once
    raw, batched, via_problem = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        coster.cost_many(archs, hw)
        raw.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(0, n, 40):
            coster.cost_many(archs[i : i + 40], hw)
        batched.append(n / (time.perf_counter() - t))
        problem = Problem(space, lambda a: 1.0, coster, hw=hw)  # a fresh cache each time
        t = time.perf_counter()
        for i in range(0, n, 40):
            problem.evaluate_fitness(genomes[i : i + 40])
        via_problem.append(n / (time.perf_counter() - t))
    table = coster.table_for(hw)
    source = "analytical model"
    if table is not None:
        path = Path(table.path).resolve()
        source = str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else path.name
    return {
        "archs": n,
        "unique_archs": len(set(archs)),
        "repeats": repeats,
        "cost_many_archs_per_s": max(raw),
        "cost_many_batch40_archs_per_s": max(batched),
        "problem_archs_per_s": max(via_problem),
        "problem_archs_per_s_runs": via_problem,
        "cost_source": source,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="supernet run directory of the preset")
    p.add_argument("--data-dir")
    p.add_argument("--toy-ppl", action="store_true", help="stand-in perplexity (no supernet)")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--hw", default="gemmini-64k-256k")
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--generations", type=int, default=40)
    p.add_argument("--eval-tokens", type=int, help="default: the preset's search.eval_tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--final-eval",
        action="store_true",
        help="also re-evaluate the front on "
        "the valid and test splits (timed separately; off: ~70 s per member and "
        "split on the cpu preset)",
    )
    p.add_argument("--final-tokens", type=int, default=0)
    p.add_argument("--costing-archs", type=int, default=20_000)
    p.add_argument("--out", default="runs/bench/search", help="search run directory")
    p.add_argument("--json", default="experiments/bench/results/search_bench.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not args.checkpoint and not args.toy_ppl:
        p.error("give --checkpoint DIR (a supernet of the preset) or --toy-ppl")

    result: dict = {
        "preset": args.preset,
        "hw": args.hw,
        "population": args.population,
        "generations": args.generations,
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "perplexity": "toy stand-in" if args.toy_ppl else f"supernet {args.checkpoint}",
    }
    result["costing"] = costing_throughput(args.preset, args.hw, args.costing_archs)
    c = result["costing"]
    print(
        f"hardware costing: {c['cost_many_archs_per_s']:,.0f} archs/s (cost_many, one "
        f"batch), {c['cost_many_batch40_archs_per_s']:,.0f} archs/s (batches of 40), "
        f"{c['problem_archs_per_s']:,.0f} archs/s through the search problem "
        f"[{c['cost_source']}]"
    )

    config = get_preset(args.preset)
    search = replace(
        config.search, population=args.population, generations=args.generations, seed=args.seed
    )
    if args.eval_tokens is not None:
        search = replace(search, eval_tokens=args.eval_tokens)
    config = replace(config, search=search)
    out = Path(args.out)
    if (out / "config.json").exists():
        out = out.with_name(f"{out.name}-{int(time.time())}")
    t = time.perf_counter()
    summary = run(
        config,
        out,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        options=SearchOptions(
            hw=args.hw, final_eval=args.final_eval, final_tokens=args.final_tokens
        ),
        evaluator=ToyEvaluator(config.space) if args.toy_ppl else None,
    )
    wall = time.perf_counter() - t
    ts = summary["time"]
    result["search"] = {
        **ts,
        "wall_s_incl_loading_and_reports": wall,
        "front_size": summary["front_size"],
        "n_evaluated": summary["n_evaluated"],
        "hypervolume": summary["hypervolume"],
        "workdir": str(out),
        "eval_tokens": config.search.eval_tokens,
        "within_20_min": wall <= 20 * 60,
    }
    print(
        f"search {args.population} x {args.generations} on {args.preset}: {wall:.1f} s wall "
        f"(search {ts['search_s']:.1f} s = perplexity {ts['ppl_eval_s']:.1f} s "
        f"[{ts['ppl_evals']} archs] + hardware {ts['hw_cost_s']:.2f} s "
        f"[{ts['hw_archs_costed']} pairs] + DEAP/bookkeeping "
        f"{ts['deap_and_bookkeeping_s']:.1f} s; final re-evaluation "
        f"{ts['final_eval_s']:.1f} s); front {summary['front_size']}, "
        f"{summary['n_evaluated']} pairs evaluated"
    )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
