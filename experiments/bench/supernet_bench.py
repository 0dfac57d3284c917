"""Benchmark: supernet train-step throughput vs a plain dense LM of the same largest arch.

Measures, in one process and interleaved (so a busy machine slows all three alike):
(a) the BigNAS sandwich step (tokens/s, and per subnet forward + backward), (b) a
single-subnet masked step of the largest arch and (c) the same module without masks, the
plain dense LM, and (d) the plain-JAX minimal LM of experiments/recipe/minimal_lm.py (same
arch shape, full softmax, no Flax) on the same batch. Reports the masking overhead (b vs c;
target <= 15%), the project's dense step against the minimal one (target: at most 15%
slower per token) and achieved FLOP/s as a fraction of a measured float32 matmul peak
(target >= 40%). Prints a table and saves results/supernet_bench_<preset>.json.

    python experiments/bench/supernet_bench.py --preset cpu [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np

from cosearch.config import get_preset, override
from cosearch.supernet.model import arch_masks, gathered_nll, stack_masks
from cosearch.supernet.train import init_state, make_model, sandwich, tail_caps, train_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipe"))
import minimal_lm  # noqa: E402
from benchio import machine, matmul_peak, print_and_save  # noqa: E402  (this folder)


def vocab_flops_per_token(model) -> float:
    """Forward FLOPs of the adaptive output layer per token, all tail clusters included."""
    c, d = model.clusters, model.d_model
    macs = (c.bounds[1] + c.n - 1) * d
    macs += sum(c.dims[i] * d + (c.bounds[i + 1] - c.bounds[i]) * c.dims[i] for i in range(1, c.n))
    return 2 * macs


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=10, help="timed repetitions of each step")
    p.add_argument("--vocab", type=int, default=33278)
    p.add_argument("--set", nargs="*", default=[], help="config overrides section.field=value")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    cfg = override(get_preset(a.preset), a.set)
    space, t = cfg.space, cfg.train
    big = space.largest()
    model = make_model(cfg, a.vocab)
    tokens = cfg.data.batch_size * space.seq_len
    rng = np.random.default_rng(0)
    zipf = np.minimum(rng.zipf(1.3, 200_000) - 1, a.vocab - 1)  # word-frequency-like ids
    caps = tail_caps(model, zipf, tokens)
    shape = (cfg.data.batch_size, space.seq_len)
    x = np.minimum(rng.zipf(1.3, shape) - 1, a.vocab - 1).astype(np.int32)
    y = np.minimum(rng.zipf(1.3, shape) - 1, a.vocab - 1).astype(np.int32)
    key = jax.random.key(0)
    alpha = t.distill_alpha if t.distill else 0.0
    one = stack_masks([arch_masks(space, big)])

    @partial(jax.jit, donate_argnums=(0,))
    def dense_step(st, x, y, key):
        def lf(p):
            out = model.apply(
                {"params": p},
                x,
                y,
                caps,
                None,
                train=True,
                rngs={"dropout": key},
                method=type(model).train_outputs,
            )
            return gathered_nll(out, y, model.clusters.bounds)

        loss, g = jax.value_and_grad(lf)(st.params)
        return st.apply_gradients(grads=g), {"loss": loss}

    def sandwich_masks(s):
        return stack_masks([arch_masks(space, m) for m in sandwich(space, 0, s, t.n_random)])

    mini_tx = minimal_lm.make_optimizer(t.lr, 1000, 10)
    heads = big.heads[0]
    mini = {
        "p": minimal_lm.init_params(
            key,
            a.vocab,
            big.d_model,
            big.n_layers,
            heads,
            big.d_ffn[0],
            space.seq_len,
            np.zeros(a.vocab),
        )
    }
    mini["o"] = mini_tx.init(mini["p"])

    def minimal_step(st, s):
        mini["p"], mini["o"], loss = minimal_lm.train_step(
            mini["p"], mini["o"], x, y, heads=heads, tx=mini_tx
        )
        return st, {"loss": loss}

    kinds = {
        "minimal": minimal_step,
        "sandwich": lambda st, s: train_step(
            st, x, y, sandwich_masks(s), key, model=model, distill=alpha, caps=caps
        ),
        "masked": lambda st, s: train_step(st, x, y, one, key, model=model, distill=0.0, caps=caps),
        "dense": lambda st, s: dense_step(st, x, y, key),
    }
    state = init_state(cfg, model)
    compile_s, times = {}, {k: [] for k in kinds}
    for k, f in kinds.items():
        t0 = time.perf_counter()
        state, m = f(state, 0)
        jax.block_until_ready(m["loss"])
        compile_s[k] = time.perf_counter() - t0
    for s in range(1, a.steps + 1):
        for k, f in kinds.items():
            t0 = time.perf_counter()
            state, m = f(state, s)
            jax.block_until_ready(m["loss"])
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    peak = matmul_peak()
    n_sub = 2 + t.n_random
    flops_big = (
        3
        * (space.flops(big, lm_head=False) / space.seq_len + vocab_flops_per_token(model))
        * tokens
    )  # forward + backward
    res = {
        "preset": a.preset,
        "batch": cfg.data.batch_size,
        "seq_len": space.seq_len,
        "vocab": a.vocab,
        "largest": big.to_dict(),
        "subnets_per_step": n_sub,
        "median_step_s": med,
        "compile_s": compile_s,
        "spread_step_s": {k: [min(v), max(v)] for k, v in times.items()},
        "sandwich_tokens_per_s": tokens / med["sandwich"],
        "per_subnet_tokens_per_s": tokens * n_sub / med["sandwich"],
        "dense_tokens_per_s": tokens / med["dense"],
        "minimal_tokens_per_s": tokens / med["minimal"],
        "dense_slower_than_minimal": med["dense"] / med["minimal"] - 1,
        "sandwich_in_dense_steps": med["sandwich"] / med["dense"],
        "mask_overhead": med["masked"] / med["dense"] - 1,
        "per_subnet_overhead_vs_dense": med["sandwich"] / n_sub / med["dense"] - 1,
        "matmul_peak_gflops": peak / 1e9,
        "dense_gflops": flops_big / med["dense"] / 1e9,
        "dense_fraction_of_peak": flops_big / med["dense"] / peak,
        "masked_fraction_of_peak": flops_big / med["masked"] / peak,
        "flops_counted": "GEMMs of the largest arch + adaptive output layer, x3 for backward",
        "machine": machine(),
    }
    print_and_save(res, Path(a.out) / f"supernet_bench_{a.preset}.json")
    return res


if __name__ == "__main__":
    main()
