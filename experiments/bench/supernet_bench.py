"""Benchmark: supernet train-step throughput vs a plain dense LM of the same largest arch.

Measures, in one process: tokens/s of (a) the BigNAS sandwich step (per subnet forward +
backward), (b) a single-subnet masked step and (c) the dense largest model without masks,
the masking overhead (b vs c), and achieved FLOP/s as a fraction of a measured float32
matmul peak on this machine. Prints a table and saves results/supernet_bench.json.

    python experiments/bench/supernet_bench.py --preset cpu [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from cosearch.config import get_preset, override
from cosearch.space import Arch
from cosearch.supernet.model import arch_masks, stack_masks
from cosearch.supernet.train import init_state, make_model, sandwich, tail_caps, train_step


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Measured float32 FLOP/s of a large square matmul (the machine's practical peak)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        f(a).block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def train_flops(space, arch: Arch, vocab_flops_per_token: float, tokens: int) -> float:
    """Forward+backward FLOPs (3x forward) of the arch's GEMMs on `tokens` tokens."""
    fwd = space.flops(arch, lm_head=False) / space.seq_len + vocab_flops_per_token
    return 3 * fwd * tokens


def time_steps(state, model, make_masks, cfg, steps: int, distill: float, caps):
    space = cfg.space
    rng = np.random.default_rng(0)
    bs, L = cfg.data.batch_size, space.seq_len
    # Zipf-like targets so the tail clusters get their real share of positions
    x = np.minimum(rng.zipf(1.3, (bs, L)) - 1, model.vocab - 1).astype(np.int32)
    y = np.minimum(rng.zipf(1.3, (bs, L)) - 1, model.vocab - 1).astype(np.int32)
    key = jax.random.key(0)
    t = time.perf_counter()
    state, m = train_step(state, x, y, make_masks(0), key, model=model, distill=distill, caps=caps)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(1, steps + 1):
        state, m = train_step(
            state, x, y, make_masks(s), key, model=model, distill=distill, caps=caps
        )
    jax.block_until_ready(m["loss"])
    return state, (time.perf_counter() - t) / steps, compile_s


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--vocab", type=int, default=33278)
    p.add_argument("--set", nargs="*", default=[], help="config overrides section.field=value")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = p.parse_args(argv)
    cfg = override(get_preset(a.preset), a.set)
    space = cfg.space
    big = space.largest()
    tokens = cfg.data.batch_size * space.seq_len
    model = make_model(cfg, a.vocab)
    c = model.clusters
    vocab_flops = 2 * (
        c.bounds[1] * big.d_model
        + sum(
            c.dims[i] * big.d_model + (c.bounds[i + 1] - c.bounds[i]) * c.dims[i]
            for i in range(1, c.n)
        )
    )
    peak = matmul_peak()

    state = init_state(cfg, model)
    zipf = np.minimum(np.random.default_rng(1).zipf(1.3, 200_000) - 1, a.vocab - 1)
    caps = tail_caps(model, zipf, tokens)
    n_sub = 2 + cfg.train.n_random
    state, t_sand, comp_sand = time_steps(
        state,
        model,
        lambda s: stack_masks(
            [arch_masks(space, x) for x in sandwich(space, 0, s, cfg.train.n_random)]
        ),
        cfg,
        a.steps,
        cfg.train.distill_alpha if cfg.train.distill else 0.0,
        caps,
    )
    one = stack_masks([arch_masks(space, big)])
    state, t_mask, _ = time_steps(state, model, lambda s: one, cfg, a.steps, 0.0, caps)

    # the plain dense model: the same module without masks (no mask multiplies at all)
    from functools import partial

    import jax.numpy as jnp  # noqa: F811 - local clarity
    import optax

    from cosearch.supernet.model import gathered_nll

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
            return gathered_nll(out, y, c.bounds)

        loss, g = jax.value_and_grad(lf)(st.params)
        return st.apply_gradients(grads=g), loss

    rng = np.random.default_rng(0)
    x = rng.integers(0, a.vocab, (cfg.data.batch_size, space.seq_len)).astype(np.int32)
    key = jax.random.key(0)
    x = np.minimum(rng.zipf(1.3, x.shape) - 1, a.vocab - 1).astype(np.int32)
    st, loss = dense_step(state, x, x, key)
    loss.block_until_ready()
    t = time.perf_counter()
    for _ in range(a.steps):
        st, loss = dense_step(st, x, x, key)
    loss.block_until_ready()
    t_dense = (time.perf_counter() - t) / a.steps
    del optax, jnp

    flops_big = train_flops(space, big, vocab_flops, tokens)
    res = {
        "preset": a.preset,
        "batch": cfg.data.batch_size,
        "seq_len": space.seq_len,
        "vocab": a.vocab,
        "largest": big.to_dict(),
        "subnets_per_step": n_sub,
        "sandwich_step_s": t_sand,
        "sandwich_compile_s": comp_sand,
        "sandwich_tokens_per_s": tokens / t_sand,
        "per_subnet_tokens_per_s": tokens * n_sub / t_sand,
        "masked_single_step_s": t_mask,
        "dense_step_s": t_dense,
        "dense_tokens_per_s": tokens / t_dense,
        "mask_overhead": t_mask / t_dense - 1,
        "per_subnet_overhead_vs_dense": t_sand / n_sub / t_dense - 1,
        "matmul_peak_gflops": peak / 1e9,
        "dense_gflops": flops_big / t_dense / 1e9,
        "dense_fraction_of_peak": flops_big / t_dense / peak,
        "masked_fraction_of_peak": flops_big / t_mask / peak,
        "machine": {
            "platform": platform.platform(),
            "cpus": jax.local_device_count(),
            "device": str(jax.devices()[0]),
            "jax": jax.__version__,
        },
    }
    for k, v in res.items():
        print(f"{k:32s} {v if not isinstance(v, float) else f'{v:.4g}'}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"supernet_bench_{a.preset}.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
