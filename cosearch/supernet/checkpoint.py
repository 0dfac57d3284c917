"""A training run's directory on disk: config.json, metrics.jsonl and orbax checkpoints.

Owns reading the run description, saving a step (and the one kept at the WSD decay's start),
restoring the newest readable step (a damaged checkpoint is skipped with a warning, never
half-loaded or dumped as a TensorStore error) and exporting parameters. It must not train
or evaluate.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import tensorstore as ts

from cosearch.config import RunConfig
from cosearch.space import SearchSpace
from cosearch.supernet.model import TransformerLM, make_model

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CKPT_DIR = "checkpoints"
STABLE_DIR = "checkpoints_stable"  # the state at the WSD decay's start (see TrainConfig)
TRAIN_HINT = "`python -m cosearch.train_supernet --workdir DIR`"


class CheckpointError(RuntimeError):
    """A run directory or checkpoint that cannot be used as asked."""


class _Unreadable(Exception):
    """A checkpoint step whose files do not read back (the message says which)."""


def read_run_config(workdir: str | Path) -> dict:
    """The run description (config.json) of a training run directory."""
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"'{workdir}' is not a cosearch run directory (no {CONFIG_FILE}); make one with "
            f"{TRAIN_HINT}"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt ({e}); delete the run or retrain") from None


def checkpoint_manager(
    workdir: str | Path, keep: int = 2, sub: str = CKPT_DIR
) -> ocp.CheckpointManager:
    """The orbax manager of `workdir/sub`, keeping the newest `keep` steps (2 by default, so
    that a damaged latest step leaves one to fall back to); folders of saves that a killed
    process left unfinished are removed."""
    return ocp.CheckpointManager(
        (Path(workdir) / sub).resolve(),
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "params": ocp.StandardCheckpointHandler(),
        },
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, cleanup_tmp_directories=True
        ),
    )


def _save_args(params, opt_state=None) -> ocp.args.Composite:
    """Always the parameters alone (what evaluation reads); with `opt_state`, also the
    training state that resuming reads."""
    items = {"params": ocp.args.StandardSave(params)}
    if opt_state is not None:
        items["state"] = ocp.args.StandardSave({"params": params, "opt_state": opt_state})
    return ocp.args.Composite(**items)


def save_state(mngr: ocp.CheckpointManager, step: int, params, opt_state) -> None:
    """Save one training step (asynchronously: orbax renames it into place when written,
    so a process killed meanwhile leaves the previous steps as they were)."""
    mngr.save(step, args=_save_args(params, opt_state))


def keep_stable(workdir: Path, step: int, params, opt_state) -> None:
    """Keep the state at the WSD decay's start apart from the rotating checkpoints: extending
    the run later restarts there. Already kept (a resumed run passing it again): left as is."""
    stable = checkpoint_manager(workdir, keep=1, sub=STABLE_DIR)
    if step in stable.all_steps():
        return
    stable.save(step, args=_save_args(params, opt_state))
    stable.wait_until_finished()


# ----- restoring -----------------------------------------------------------------------------
def _check_readable(step_dir: Path, item: str) -> None:
    """Read every stored chunk of `item` back, synchronously: orbax's asynchronous reads of
    a damaged file end in an OCDBT error and stray 'Event loop is closed' tracebacks."""
    item_dir = step_dir / item
    if not item_dir.is_dir():
        raise _Unreadable(f"its {item}/ folder is missing")
    if not (item_dir / "manifest.ocdbt").is_file():
        return  # not an OCDBT checkpoint: orbax's restore is the check
    try:
        kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{item_dir.resolve()}/"}).result()
        for key in kv.list().result():
            kv.read(key).result()
    except ValueError as e:
        log.debug("reading %s: %s", item_dir, e)
        raise _Unreadable(f"a file under {item}/ is truncated or corrupt") from None


def _restore_step(mngr: ocp.CheckpointManager, step: int, item: str, abstract, what: str):
    step_dir = Path(mngr.directory) / str(step)
    _check_readable(step_dir, item)
    try:
        mngr.item_metadata(step)[item]
    except Exception as e:  # missing or garbled metadata files; orbax raises several types
        log.debug("metadata of %s: %r", step_dir, e)
        raise _Unreadable(f"the metadata of {item}/ is unreadable") from None
    args = ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)})
    try:
        return mngr.restore(step, args=args)[item]
    except Exception as e:  # every file read back: a tree or shape mismatch
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(
            f"checkpoint {step_dir} does not match {what} ({type(e).__name__}: {first})"
        ) from None


def _restore_newest(
    workdir: Path,
    candidates: Sequence[tuple[ocp.CheckpointManager, int]],
    item: str,
    abstract,
    what: str,
) -> tuple[int, ocp.CheckpointManager, Any]:
    """The first of `candidates` (manager, step) that reads back, warning about the ones
    before it that do not; a CheckpointError naming them if none does."""
    bad: list[str] = []
    last = None  # the manager of the last unreadable step: its folder is named once
    for mngr, step in candidates:
        try:
            tree = _restore_step(mngr, step, item, abstract, what)
        except _Unreadable as e:
            where = "" if mngr is last else f" in '{mngr.directory}'"
            bad.append(f"step {step}{where} is unreadable ({e})")
            last = mngr
            continue
        if bad:
            log.warning("checkpoint %s; using step %d instead", "; ".join(bad), step)
        return step, mngr, tree
    raise CheckpointError(
        f"checkpoint {'; '.join(bad)}; no readable checkpoint is left: delete '{workdir}' and "
        f"train again with {TRAIN_HINT.replace('DIR', str(workdir))}"
    )


def restore_params(
    workdir: str | Path, model: TransformerLM, space: SearchSpace, step: int | None = None
) -> tuple[dict, int]:
    """Parameters of the newest readable (or the given) checkpoint of a run, checked
    against `model`, and their step."""
    workdir = Path(workdir)
    mngr = checkpoint_manager(workdir)
    steps = sorted(mngr.all_steps(), reverse=True)
    if not steps:
        raise CheckpointError(
            f"no checkpoint under '{workdir}/{CKPT_DIR}'; train first with "
            "`python -m cosearch.train_supernet`"
        )
    if step is not None:
        if step not in steps:
            raise CheckpointError(
                f"no checkpoint step {step} under '{workdir}/{CKPT_DIR}'; saved steps: "
                + ", ".join(map(str, steps))
            )
        steps = [step]
    x = jnp.zeros((1, space.seq_len), jnp.int32)
    # onto this process's first device, whatever devices the run that saved it used
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
        jax.eval_shape(lambda: model.init(jax.random.key(0), x)["params"]),
    )
    what = f"the model of preset space '{space.name}'"
    step, _, params = _restore_newest(workdir, [(mngr, s) for s in steps], "params", abstract, what)
    return params, step


def resume_state(workdir: Path, abstract, restart_at: int | None = None) -> tuple[int, Any] | None:
    """The newest readable training state of a run as (step, tree like `abstract`), or None
    if it saved none. `restart_at` (extending a finished run: its WSD decay's first step)
    prefers the state kept there, then steps up to it, then later ones, whose learning rate
    was already decayed (warned). Checkpoints after the returned step (unreadable ones, or
    ones past the old decay) are deleted, so that training saves those steps anew."""
    mngr = checkpoint_manager(workdir)
    steps = mngr.all_steps()
    if not steps:
        return None
    candidates = [(mngr, s) for s in sorted(steps, reverse=True)]
    if restart_at is not None and max(steps) > restart_at:
        candidates.sort(key=lambda c: c[1] > restart_at)  # stable: newest first within each
        stable = checkpoint_manager(workdir, keep=1, sub=STABLE_DIR)
        if restart_at in stable.all_steps():
            candidates.insert(0, (stable, restart_at))
    what = "this run's model and optimizer"
    start, _, state = _restore_newest(workdir, candidates, "state", abstract, what)
    if restart_at is not None and start > restart_at:
        log.warning(
            "no readable checkpoint kept at step %d (decay start); extending from step %d, "
            "where the learning rate was already decayed",
            restart_at,
            start,
        )
    elif restart_at is not None and max(steps) > restart_at:
        log.info("extending: restarting from step %d, before the old decay", start)
    for step in mngr.all_steps():
        if step > start:
            mngr.delete(step)
    return start, state


def export_params(workdir: str | Path, out: str | Path) -> Path:
    """Copy a run's latest parameters (no optimizer state), config and metrics to `out`:
    a small run directory that `Evaluator` and the search load like the original."""
    workdir, out = Path(workdir), Path(out)
    desc = read_run_config(workdir)
    config = RunConfig.from_dict(desc["config"])
    model = make_model(config, desc["vocab_size"])
    params, step = restore_params(workdir, model, config.space)
    if out.exists():
        raise CheckpointError(f"'{out}' exists; remove it or choose another export directory")
    out.mkdir(parents=True)
    for name in (CONFIG_FILE, METRICS_FILE):
        shutil.copy2(workdir / name, out / name)
    mngr = checkpoint_manager(out, keep=1)
    mngr.save(step, args=_save_args(params))
    mngr.wait_until_finished()
    for marker in out.rglob("commit_success.txt"):  # orbax writes this machine's path there
        marker.write_text("Checkpoint commit was successful\n")
    return out
