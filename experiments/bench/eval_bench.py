"""Benchmark: perplexity evaluation per arch, the full masked supernet vs depth-and-width
buckets.

The search spends almost all its time scoring subnets on a few thousand validation tokens.
This times, interleaved arch by arch in one process (a busy machine slows both alike), the
full-width masked supernet (every subnet at the largest arch's compute, one compile) and the
bucketed path `Evaluator.windows` now takes (the supernet sliced to the arch's depth and
width, heads and FFN masked: one compile per bucket), on the same random archs and tokens,
and checks both give the same per-window NLLs (to float32 rounding). It also says how much
faster evaluation could get without changing results: per arch, XLA's FLOP count
(`cost_analysis` of the lowered step, no compile) of the bucket's step and of the arch's own
dense step (what a per-arch compile would run), and the achieved FLOP rate against the
machine's matmul peak measured in the same process. Prints a table and saves
results/eval_bench_<preset>.json.

    python experiments/bench/eval_bench.py --checkpoint checkpoints/supernet-cpu --archs 40
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import numpy as np
from benchio import machine, matmul_peak, print_and_save  # this folder: scripts run from here

from cosearch.data import eval_batches
from cosearch.supernet.evaluate import eval_step, exact_caps, load_evaluator, split_windows
from cosearch.supernet.extract import extract


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", default="checkpoints/supernet-cpu")
    p.add_argument("--data-dir", default=None, help="WikiText-2 directory ($COSEARCH_DATA)")
    p.add_argument("--archs", type=int, default=40, help="random archs to time (seed 0)")
    p.add_argument("--tokens", type=int, default=4096, help="validation tokens per arch")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    ev = load_evaluator(a.checkpoint, a.data_dir)
    space, tokens, bs = ev.space, ev.corpus.valid, ev.config.data.eval_batch_size
    rng = random.Random(0)
    archs = [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(a.archs - 2))]

    def full(arch):
        return split_windows(ev.model, ev.params, space, arch, tokens, bs, a.tokens)

    def bucketed(arch):
        return ev.windows(arch, "valid", a.tokens, save=False)

    batches = list(eval_batches(tokens, bs, space.seq_len, a.tokens))

    def flops_per_token(arch) -> tuple[float, float]:
        """XLA's FLOPs per token of the bucketed step and of the arch's own dense step."""
        model, params, masks = ev.bucket(arch)
        caps = exact_caps(model, batches)
        x, y, w = batches[0]
        fb = eval_step.lower(params, x, y, w, masks, model=model, caps=caps).cost_analysis()
        dm, dp = extract(space, {"params": ev.params}, arch, ev.model)
        fd = eval_step.lower(dp["params"], x, y, w, None, model=dm, caps=caps).cost_analysis()
        return fb["flops"] / x.size, fd["flops"] / x.size

    t0 = time.perf_counter()
    full(archs[0])
    compile_full = time.perf_counter() - t0
    times = {"full": [], "bucketed": [], "bucketed_incl_compile": []}
    max_rel = 0.0
    for arch in archs:
        t0 = time.perf_counter()
        wf = full(arch)
        times["full"].append(time.perf_counter() - t0)
        fresh = (arch.n_layers, arch.d_model) not in ev._buckets
        ev.scores.clear()
        t0 = time.perf_counter()
        wb = bucketed(arch)
        dt = time.perf_counter() - t0
        times["bucketed_incl_compile"].append(dt)
        if fresh:  # time it again, compiled
            ev.scores.clear()
            t0 = time.perf_counter()
            wb = bucketed(arch)
            dt = time.perf_counter() - t0
        times["bucketed"].append(dt)
        max_rel = max(max_rel, float(np.max(np.abs(wb.nll - wf.nll) / np.abs(wf.nll))))
    flops = [flops_per_token(arch) for arch in archs]  # after the timing: no bucket made early
    peak = matmul_peak()
    med = {k: statistics.median(v) for k, v in times.items()}
    fb = np.array([f[0] for f in flops]) * a.tokens  # FLOPs per arch evaluation
    fo = np.array([f[1] for f in flops]) * a.tokens
    rate = fb / np.array(times["bucketed"])
    tot = {k: sum(v) for k, v in times.items()}
    res = {
        "checkpoint": a.checkpoint,
        "archs": len(archs),
        "tokens_per_arch": a.tokens,
        "buckets_compiled": len(ev._buckets),
        "median_s_per_arch": med,
        "total_s": tot,
        "archs_per_s": {
            "full": len(archs) / tot["full"],
            "bucketed": len(archs) / tot["bucketed"],
            "bucketed_incl_compile": len(archs) / tot["bucketed_incl_compile"],
        },
        "tokens_per_s_per_arch": {k: a.tokens / v for k, v in med.items()},
        "speedup_median": med["full"] / med["bucketed"],
        "speedup_total_incl_compile": tot["full"] / tot["bucketed_incl_compile"],
        "compile_full_s": compile_full,
        "max_relative_nll_difference": max_rel,
        "bucketed_mflop_per_token_median": float(np.median(fb)) / a.tokens / 1e6,
        "own_mflop_per_token_median": float(np.median(fo)) / a.tokens / 1e6,
        # the bucket runs every head and FFN unit of its depth and width: this much more
        # work than the arch's own dense subnet, on these archs
        "bucket_over_own_flops_total": float(fb.sum() / fo.sum()),
        "matmul_peak_gflops": peak / 1e9,
        "bucketed_gflops_median": float(np.median(rate)) / 1e9,
        "bucketed_fraction_of_peak_median": float(np.median(rate)) / peak,
        # if every arch ran its own FLOPs at the machine's matmul peak with no compile:
        # the most a faster evaluation could gain over the bucketed path, here
        "ceiling_speedup_over_bucketed": float(sum(times["bucketed"]) / (fo.sum() / peak)),
        "machine": machine(),
    }
    print_and_save(res, Path(a.out) / f"eval_bench_{space.name}.json")
    return res


if __name__ == "__main__":
    main()
