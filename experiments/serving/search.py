"""The co-search in three serving scenarios x two mapping regimes, one supernet.

    COSEARCH_DATA=DIR python experiments/serving/search.py [--population 16 --generations 6]

Runs `python -m cosearch.search --hw search --scenario S --regime R` (arch and Gemmini
buffer split searched jointly under the 320 KiB SRAM budget) for S in prefill, decode,
chat and R in optimal, gemmini-tiler, on the committed `cpu` supernet
(checkpoints/supernet-cpu), in one process so that the six searches share one evaluator
and its perplexity cache (perplexity does not depend on the scenario or the hardware).
Small on purpose (2 busy cores): population x generations and --eval-tokens are set
below; the front is not re-evaluated on the full splits (--no-final-eval), so its
perplexities are search estimates on the first --eval-tokens validation tokens. Each
search writes its usual run directory to results/<scenario>-<regime>/ (the resumable
state/ is not committed). The cost tables are lut/cpu (prefill) and lut/cpu/<scenario
tag>/ (run.sh builds them).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

from cosearch.evo import SearchOptions, run
from cosearch.search import DEFAULT_CHECKPOINT, parse_args, resolve_config
from cosearch.supernet.evaluate import load_evaluator

HERE = Path(__file__).parent
OUT = HERE / "results"
SCENARIOS = ("prefill", "decode", "chat")
REGIMES = ("optimal", "gemmini-tiler")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--eval-tokens", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--fresh", action="store_true", help="delete earlier results first")
    p.add_argument(
        "--ppl-cache",
        default="runs/serving-ppl-cache",
        help="perplexity cache directory (not committed); experiments/thesis_cpu/results/"
        "ppl-cache shares the thesis study's scores of the same checkpoint",
    )
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    flags = [
        "--checkpoint",
        str(DEFAULT_CHECKPOINT),
        "--population",
        str(a.population),
        "--generations",
        str(a.generations),
        "--eval-tokens",
        str(a.eval_tokens),
        "--seed",
        str(a.seed),
    ]
    config = resolve_config(parse_args(flags))
    # the perplexity cache lives outside the committed results (runs/ is not committed)
    cache = Path(a.ppl_cache)
    cache.mkdir(parents=True, exist_ok=True)
    evaluator = load_evaluator(
        DEFAULT_CHECKPOINT, a.data_dir, expect_space=config.space.name, cache_dir=cache
    )
    times = {}
    for scenario in SCENARIOS:
        for regime in REGIMES:
            out = OUT / f"{scenario}-{regime}"
            if a.fresh and out.exists():
                shutil.rmtree(out)
            done = (out / "pareto.json").is_file()
            if done:
                print(f"{out.name}: done earlier, kept")
                continue
            resume = (out / "config.json").is_file()
            # analytical costs for every config: the real-Timeloop tables cover two prefill
            # configs with upper bounds (see thesis_cpu/run.sh), so `auto` would mix sources
            opts = SearchOptions(
                hw="search",
                regime=regime,
                scenario=scenario,
                final_eval=False,
                backend="analytical",
            )
            t = time.perf_counter()
            summary = run(
                config,
                out,
                checkpoint="checkpoints/supernet-cpu",
                options=opts,
                resume=resume,
                evaluator=evaluator,
                progress=False,
            )
            times[out.name] = round(time.perf_counter() - t, 1)
            print(
                f"{out.name}: front {summary['front_size']} of {summary['n_evaluated']} "
                f"pairs, {times[out.name]} s"
            )
    log = OUT / "search_times.json"
    old = json.loads(log.read_text()) if log.is_file() else {}
    log.write_text(json.dumps({**old, **times}, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
