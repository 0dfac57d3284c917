"""BigNAS training of the supernet (or from-scratch training of one fixed arch).

Owns the pure jitted train step (sandwich rule + in-place distillation), the optimizer, the
learning-rate schedule and the training loop; checkpoints and the run directory's files are
`checkpoint`'s. Each step's subnets and batch are pure functions of (seed, step), so
`resume=True` continues exactly as if the run had not stopped. With several devices the
batch is split over a `data` mesh axis and the state replicated (data parallelism, the same
compiled step). It must not know about hardware costs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from cosearch.config import RunConfig, differences
from cosearch.data import load_corpus, train_batch
from cosearch.runinfo import drop_partial_line, git_commit, write_json_atomic
from cosearch.space import Arch, SearchSpace
from cosearch.supernet.checkpoint import (
    CONFIG_FILE,
    METRICS_FILE,
    CheckpointError,
    checkpoint_manager,
    keep_stable,
    read_run_config,
    resume_state,
    save_state,
)
from cosearch.supernet.evaluate import evaluate_archs
from cosearch.supernet.metrics import MetricsLog
from cosearch.supernet.model import (
    TransformerLM,
    arch_masks,
    gathered_kl,
    gathered_nll,
    make_model,
    stack_masks,
    unigram_biases,
)

log = logging.getLogger(__name__)


# ----- streams of randomness ---------------------------------------------------------------
def streams(seed: int) -> dict[str, jax.Array]:
    """One seed split into named streams (params, dropout); data and subnet sampling use
    numpy/python generators seeded by (seed, stream id, step)."""
    root = jax.random.key(seed)
    return {"params": jax.random.fold_in(root, 0), "dropout": jax.random.fold_in(root, 1)}


def sandwich(space: SearchSpace, seed: int, step: int, n_random: int) -> list[Arch]:
    """Largest, smallest and `n_random` uniformly sampled subnets for this step."""
    rng = random.Random(f"{seed}:sandwich:{step}")
    return [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(n_random))]


# ----- model, optimizer, state -------------------------------------------------------------
def lr_schedule(config: RunConfig) -> optax.Schedule:
    """Learning rate per step (see TrainConfig.schedule)."""
    t = config.train
    if t.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, t.lr, t.warmup_steps, max(t.steps, t.warmup_steps + 1), t.lr * t.min_lr_ratio
        )
    if t.schedule == "wsd":
        decay = max(1, round(t.decay_frac * t.steps))
        stable = max(0, t.steps - decay - t.warmup_steps)
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, t.lr, t.warmup_steps),
                optax.constant_schedule(t.lr),
                optax.linear_schedule(t.lr, t.lr * t.min_lr_ratio, decay),
            ],
            [t.warmup_steps, t.warmup_steps + stable],
        )
    raise ValueError(f"train.schedule={t.schedule!r}: expected wsd or cosine")


def decay_start(config: RunConfig) -> int | None:
    """First step of the WSD decay (None for cosine): extending a run restarts there."""
    t = config.train
    if t.schedule != "wsd":
        return None
    return max(t.warmup_steps, t.steps - max(1, round(t.decay_frac * t.steps)))


def make_optimizer(config: RunConfig) -> optax.GradientTransformation:
    t = config.train
    return optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.adamw(lr_schedule(config), b2=t.b2, weight_decay=t.weight_decay),
    )


def init_state(
    config: RunConfig, model: TransformerLM, train_tokens: np.ndarray | None = None
) -> train_state.TrainState:
    """Fresh parameters and optimizer state; with `train_tokens` and
    model.output_bias=unigram the output biases start at the log-unigram distribution."""
    space = config.space
    x = jnp.zeros((1, space.seq_len), jnp.int32)
    params = model.init(
        streams(config.train.seed)["params"], x, arch_masks(space, space.largest())
    )["params"]
    if config.model.output_bias == "unigram" and train_tokens is not None:
        emb = dict(params["embedding"])
        emb.update(unigram_biases(model.clusters, train_tokens))
        params = {**params, "embedding": emb}
    return train_state.TrainState.create(
        apply_fn=model.apply, params=params, tx=make_optimizer(config)
    )


# ----- the pure step -----------------------------------------------------------------------
def tail_caps(model: TransformerLM, train_tokens: np.ndarray, n_positions: int) -> tuple[int, ...]:
    """Per-tail-cluster number of positions gathered per step: 1.6x the cluster's share of
    training tokens plus 2% of the positions (more than any batch of ours needed when
    measured on WikiText-2; overflowing positions are counted in metrics)."""
    b = model.clusters.bounds
    caps = []
    for i in range(1, model.clusters.n):
        share = float(((train_tokens >= b[i]) & (train_tokens < b[i + 1])).mean())
        caps.append(min(n_positions, int(np.ceil(n_positions * (1.6 * share + 0.02)))))
    return tuple(caps)


@partial(jax.jit, static_argnames=("model", "distill", "caps"), donate_argnums=(0,))
def train_step(
    state,
    inputs,
    targets,
    masks,
    rng,
    *,
    model: TransformerLM,
    distill: float,
    caps: tuple[int, ...],
):
    """One BigNAS step. masks: stacked subnet masks, index 0 = the teacher (largest).
    The teacher learns from the labels; the others from `distill` x KL to the teacher's
    stop-gradient soft predictions (in-place distillation) + (1 - distill) x the labels'
    cross-entropy (distill=0: labels only). Gradients are summed."""
    bounds = model.clusters.bounds
    n_sub = masks["layer"].shape[0]

    def loss_fn(params):
        def run(i):
            m = jax.tree_util.tree_map(lambda a: a[i], masks)
            return model.apply(
                {"params": params},
                inputs,
                targets,
                caps,
                m,
                train=True,
                rngs={"dropout": jax.random.fold_in(rng, i)},
                method=TransformerLM.train_outputs,
            )

        teacher = run(0)
        losses = [gathered_nll(teacher, targets, bounds)]
        soft = jax.lax.stop_gradient(teacher)
        for i in range(1, n_sub):
            out = run(i)
            ce = gathered_nll(out, targets, bounds)
            losses.append(distill * gathered_kl(soft, out) + (1 - distill) * ce if distill else ce)
        overflow = sum(t["overflow"] for t in teacher["tails"])
        return sum(losses), (jnp.stack(losses), overflow)

    (loss, (parts, overflow)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    return state, {
        "loss": loss,
        "parts": parts,
        "grad_norm": optax.global_norm(grads),
        "overflow": overflow,
    }


# ----- devices -----------------------------------------------------------------------------
def data_mesh(devices: int | None, batch_size: int) -> Mesh | None:
    """A mesh with one `data` axis over the first `devices` devices (None: all of them, every
    host's after `jax.distributed.initialize`); None for one device, which runs exactly the
    single-device path. The global batch must split evenly over the devices."""
    available = jax.devices()
    n = len(available) if devices is None else devices
    if not 1 <= n <= len(available):
        raise ValueError(
            f"--devices {n}: this run sees {len(available)} {available[0].platform} device(s); "
            f"pass --devices between 1 and {len(available)}"
        )
    if batch_size % n:
        raise ValueError(
            f"--devices {n} does not divide data.batch_size={batch_size} (the global batch); "
            f"pass --set data.batch_size=<a multiple of {n}> or --devices dividing {batch_size}"
        )
    return None if n == 1 else Mesh(np.array(available[:n]), ("data",))


def _place(tree, mesh: Mesh | None, *, batch: bool = False):
    """`tree` on the mesh: replicated, or (batch) split along its first axis. Every process
    holds the whole tree and contributes its own devices' shards (`device_put` cannot
    place onto another host's devices)."""
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, PartitionSpec("data") if batch else PartitionSpec())

    def put(a):
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                put(jax.random.key_data(a)), impl=jax.random.key_impl(a)
            )
        host = np.asarray(a)
        host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree_util.tree_map(put, tree)


class _NoMetrics:
    """The metrics log of a multi-host run's other processes: the first one writes it."""

    def write(self, rec: dict) -> None:
        pass

    def __enter__(self) -> _NoMetrics:
        return self

    def __exit__(self, *exc) -> None:
        pass


# ----- the job -----------------------------------------------------------------------------
def run(
    config: RunConfig,
    workdir: str | Path,
    *,
    resume: bool = False,
    from_scratch: Arch | None = None,
    stop_after: int | None = None,
    devices: int | None = None,
) -> dict:
    """Train the supernet of `config` (or, with `from_scratch`, one fixed arch with the same
    loop) in `workdir`. `stop_after` ends early after that many steps (for tests of resume).
    `devices`: data-parallel over that many devices (default: all); the count is recorded
    but is not part of the config, so a run may resume on another count. Returns the final
    metrics."""
    workdir = Path(workdir)
    space = config.space
    mesh = data_mesh(devices, config.data.batch_size)
    n_devices = 1 if mesh is None else mesh.size
    primary = jax.process_index() == 0  # writes the run's files in a multi-host run
    corpus = load_corpus(config.data.data_dir or None)
    if corpus.vocab_size != space.vocab:
        log.warning(
            "corpus vocabulary %d differs from space '%s' vocab %d (LUT LM head uses the latter)",
            corpus.vocab_size,
            space.name,
            space.vocab,
        )
    if from_scratch is not None:
        space.validate(from_scratch)
    desc = {
        "config": config.to_dict(),
        "space": space.to_dict(),
        "vocab_size": corpus.vocab_size,
        "from_scratch": None if from_scratch is None else from_scratch.to_dict(),
        "git_commit": git_commit(),
        "seed": config.train.seed,
        "data_source": Path(corpus.source).name,
        "devices": n_devices,  # where the run started; resuming elsewhere is allowed
    }
    cfg_path = workdir / CONFIG_FILE
    extend_from: int | None = None  # the saved run's steps when this run extends it
    if cfg_path.exists():
        old = read_run_config(workdir)
        if not resume:
            raise CheckpointError(
                f"'{workdir}' already holds a run; pass --resume to continue "
                "it or choose another --workdir"
            )
        for key in ("config", "from_scratch", "vocab_size"):
            saved, now = _comparable(old.get(key)), _comparable(desc[key])
            if key == "config":  # fields added since the run was saved take their old values
                saved = _comparable(_complete_config(saved))
            if key == "config":
                saved_steps = saved["train"].pop("steps")
                now["train"].pop("steps")
                if saved_steps != config.train.steps:
                    if config.train.steps < saved_steps:
                        raise CheckpointError(
                            f"cannot resume '{workdir}' with --steps {config.train.steps}: "
                            f"it was set up for {saved_steps} steps; --steps may only grow"
                        )
                    extend_from = saved_steps
            if saved != now:
                raise CheckpointError(
                    f"cannot resume '{workdir}': its {key} differs from this run's in "
                    f"{differences(saved, now)}; use the same preset and overrides"
                )
    elif resume:
        raise CheckpointError(
            f"--resume: '{workdir}' holds no run ({CONFIG_FILE} missing); drop --resume to "
            "start a new run there"
        )
    workdir.mkdir(parents=True, exist_ok=True)

    model = make_model(config, corpus.vocab_size)
    state = init_state(config, model, corpus.train)
    start = 0
    if resume:
        if primary:
            drop_partial_line(workdir / METRICS_FILE)
        restart_at = None
        if extend_from is not None:  # restart the old decay from its start (TrainConfig)
            restart_at = decay_start(RunConfig.from_dict(old["config"]))
        abstract = {"params": state.params, "opt_state": state.opt_state}
        found = resume_state(workdir, jax.tree_util.tree_map(np.asarray, abstract), restart_at)
        if found is not None:
            start, restored = found
            state = state.replace(
                step=start, params=restored["params"], opt_state=restored["opt_state"]
            )
            log.info("resumed %s at step %d", workdir, start)
    mngr = checkpoint_manager(workdir)  # after resume_state, which may drop later steps
    if extend_from is not None and primary:
        desc["extended"] = [*old.get("extended", []), {"from_steps": extend_from, "at": start}]
        with open(workdir / METRICS_FILE, "a") as mf:
            mf.write(
                json.dumps(
                    {
                        "event": "extend",
                        "from_steps": extend_from,
                        "to_steps": config.train.steps,
                        "restart_step": start,
                    }
                )
                + "\n"
            )
    if primary and (extend_from is not None or not cfg_path.exists()):
        write_json_atomic(cfg_path, desc)
    stable_at = decay_start(config)

    t = config.train
    dropout_key = streams(t.seed)["dropout"]
    metrics_path = workdir / METRICS_FILE
    end = t.steps if stop_after is None else min(t.steps, start + stop_after)
    tokens_per_step = config.data.batch_size * space.seq_len
    caps = tail_caps(model, corpus.train, tokens_per_step)
    last: dict = {}
    prev = start
    bar = tqdm(
        range(start, end), initial=start, total=t.steps, desc="train", unit="step", disable=None
    )
    t0 = time.perf_counter()
    parts = (
        ["arch"]
        if from_scratch
        else ["largest", "smallest"] + [f"random{i + 1}" for i in range(t.n_random)]
    )
    schedule = lr_schedule(config)
    if start < end:
        log.info(
            "compiling the %s train step (%d subnet(s) per step, %d device(s)); the first "
            "step takes a minute or more on CPU",
            "from-scratch" if from_scratch else "BigNAS sandwich",
            len(parts),
            n_devices,
        )
    state = _place(state, mesh)
    with MetricsLog(metrics_path, parts) if primary else _NoMetrics() as mf:
        for step in bar:
            archs = [from_scratch] if from_scratch else sandwich(space, t.seed, step, t.n_random)
            masks = stack_masks([arch_masks(space, a) for a in archs])
            x, y = train_batch(corpus.train, config.data.batch_size, space.seq_len, t.seed, step)
            state, m = train_step(
                state,
                _place(x, mesh, batch=True),
                _place(y, mesh, batch=True),
                _place(masks, mesh),
                _place(jax.random.fold_in(dropout_key, step), mesh),
                model=model,
                distill=t.distill_alpha if t.distill else 0.0,
                caps=caps,
            )
            done = step + 1
            if done % t.log_every == 0 or done == end:
                jax.block_until_ready(m["loss"])  # dispatch is async: time finished work
                dt = time.perf_counter() - t0
                t0 = time.perf_counter()
                n_steps, prev = done - prev, done
                last = {
                    "step": done,
                    "loss": float(m["loss"]),
                    "loss_parts": [float(v) for v in m["parts"]],
                    "grad_norm": float(m["grad_norm"]),
                    "tail_overflow": int(m["overflow"]),
                    "tokens_per_s": tokens_per_step * n_steps / dt,
                    "lr": float(schedule(step)),
                    "devices": n_devices,
                    "time": time.time(),
                }
                mf.write(last)
                bar.set_postfix(loss=f"{last['loss']:.3f}", tok_s=f"{last['tokens_per_s']:.0f}")
                if bar.disable:  # no terminal: keep a readable trace in the log instead
                    log.info(
                        "step %d/%d loss %.3f %.0f tokens/s",
                        done,
                        t.steps,
                        last["loss"],
                        last["tokens_per_s"],
                    )
            if done == stable_at:  # kept first: extending the run restarts its decay here
                keep_stable(workdir, done, state.params, state.opt_state)
            if done % t.ckpt_every == 0 or done == end or done == stable_at:
                save_state(mngr, done, state.params, state.opt_state)
            if done % t.eval_every == 0 or done == t.steps:
                mngr.wait_until_finished()
                ev_archs = _eval_archs(space, from_scratch, t.seed, done)
                ppl = evaluate_archs(
                    config,
                    model,
                    state.params,
                    ev_archs,
                    corpus.valid,
                    max_tokens=t.eval_tokens or None,
                )
                rec = {
                    "step": done,
                    "eval": ppl,
                    "archs": {k: a.to_dict() for k, a in ev_archs.items()},
                    "eval_tokens": t.eval_tokens,
                    "time": time.time(),
                }
                mf.write(rec)
                tqdm.write(
                    f"step {done}: valid ppl "
                    + ", ".join(f"{k}={v:.1f}" for k, v in rec["eval"].items())
                )
                t0 = time.perf_counter()
    mngr.wait_until_finished()
    return last


def _comparable(obj):
    """JSON-normalised, without the data location (moving the data may not block resume)."""
    obj = json.loads(json.dumps(obj))
    if isinstance(obj, dict) and isinstance(obj.get("data"), dict):
        obj["data"].pop("data_dir", None)
    return obj


def _complete_config(saved: dict) -> dict:
    """A saved config with the fields it predates filled in as `RunConfig.from_dict` loads
    them (e.g. model.compute_dtype: float32), so a new field does not block resuming."""
    try:
        return RunConfig.from_dict(saved).to_dict()
    except (KeyError, TypeError, ValueError):  # not a config this version reads: as saved
        return saved


def _eval_archs(
    space: SearchSpace, from_scratch: Arch | None, seed: int, step: int
) -> dict[str, Arch]:
    if from_scratch is not None:
        return {"arch": from_scratch}
    rng = random.Random(f"{seed}:eval:{step}")
    return {"largest": space.largest(), "smallest": space.smallest(), "random": space.sample(rng)}
