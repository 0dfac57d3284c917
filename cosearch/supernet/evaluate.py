"""Perplexity of any subnet of a trained supernet, one compiled function for all subnets.

Owns the eval step (word-level NLL summed per evaluation window over fixed-shape batches),
`evaluate_archs` used during training, and `Evaluator`, which loads a run directory and
caches per-window NLL sums (`cosearch.stats.Windows`, so that differences between archs are
paired measurements) by (checkpoint step, split, token budget, arch; for the int8 model of
`cosearch.supernet.quant` also its recipe) in memory and in `ppl_cache.jsonl`
(`cosearch.supernet.score_cache`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import jax
import numpy as np

from cosearch import stop
from cosearch.config import RunConfig
from cosearch.data import eval_batches, load_corpus, perplexity
from cosearch.space import Arch, SearchSpace
from cosearch.stats import Windows
from cosearch.supernet.checkpoint import CheckpointError, read_run_config, restore_params
from cosearch.supernet.extract import extract
from cosearch.supernet.model import TransformerLM, arch_masks, gathered_token_nll, make_model
from cosearch.supernet.score_cache import ScoreCache

log = logging.getLogger(__name__)
DENSE_FROM_TOKENS = 50_000  # evaluations at least this long use the extracted dense subnet


def _eval_step(params, inputs, targets, weights, masks, *, model: TransformerLM, caps):
    """Per-window summed NLL (nats) and token counts, shape (B,), of one batch under the
    subnet `masks`. Tail clusters are evaluated only at their targets' positions; `caps`
    must cover the most such positions of any batch (see `exact_caps`), which keeps the
    result exact."""
    out = model.apply(
        {"params": params},
        inputs,
        targets,
        caps,
        masks,
        train=False,
        method=TransformerLM.train_outputs,
    )
    nll = gathered_token_nll(out, targets, model.clusters.bounds).reshape(weights.shape)
    return (nll * weights).sum(-1), weights.sum(-1)


eval_step = jax.jit(_eval_step, static_argnames=("model", "caps"))


# The same step for one arch's extracted dense subnet: compiled once per arch, so its
# executables (about 30 MB each) are dropped after each evaluation (`Evaluator`), or a
# study's thousands of long evaluations would hold gigabytes.
# (A function of its own: jits of one function share one cache, and clearing it would
# drop the bucketed steps' compiles too.)
@partial(jax.jit, static_argnames=("model", "caps"))
def dense_eval_step(params, inputs, targets, weights, masks, *, model: TransformerLM, caps):
    return _eval_step(params, inputs, targets, weights, masks, model=model, caps=caps)


def exact_caps(model: TransformerLM, batches: list) -> tuple[int, ...]:
    """Per tail cluster, the largest number of its targets in any batch, rounded up to a
    multiple of 64 so that similar budgets share one compiled step."""
    b = model.clusters.bounds
    caps = []
    for i in range(1, model.clusters.n):
        most = max(int(((y >= b[i]) & (y < b[i + 1])).sum()) for _, y, _ in batches)
        caps.append(min(batches[0][1].size, -(-max(most, 1) // 64) * 64))
    return tuple(caps)


def split_windows(
    model: TransformerLM,
    params,
    space: SearchSpace,
    arch: Arch,
    tokens: np.ndarray,
    batch_size: int,
    max_tokens: int | None = None,
    *,
    masked: bool = True,
    masks: dict | None = None,
    step: Callable = eval_step,
) -> Windows:
    """Per-window NLL sums of `arch` over the evaluation windows of `tokens` (padding
    windows dropped): `model` is the supernet (masked=True), a depth-and-width bucket of it
    with the arch's `masks` (see `Evaluator`), or the dense model of `arch` itself
    (masked=False, e.g. from `extract`)."""
    if masked and masks is None:
        masks = arch_masks(space, arch)
    elif not masked:
        masks = None
    batches = list(eval_batches(tokens, batch_size, space.seq_len, max_tokens))
    caps = exact_caps(model, batches)
    return batch_windows(
        batches, lambda x, y, w: step(params, x, y, w, masks, model=model, caps=caps)
    )


def batch_windows(batches: list, step: Callable) -> Windows:
    """`Windows` of `step(inputs, targets, weights) -> (per-window NLL sums, counts)` over
    `batches` (from `eval_batches`), padding windows dropped."""
    nll, cnt = [], []
    for x, y, w in batches:
        stop.check()  # a stop signal swallowed by a JAX callback stops here
        s, c = step(x, y, w)
        nll.append(np.asarray(s, np.float64))
        cnt.append(np.asarray(c, np.float64))
    nll_a, cnt_a = np.concatenate(nll), np.concatenate(cnt)
    keep = cnt_a > 0
    return Windows(nll_a[keep], cnt_a[keep])


def split_ppl(*args, **kwargs) -> float:
    """Perplexity of `arch` (same arguments as `split_windows`)."""
    w = split_windows(*args, **kwargs)
    return perplexity(float(w.nll.sum()), float(w.tokens.sum()))


def evaluate_archs(
    config: RunConfig,
    model: TransformerLM,
    params,
    archs: dict[str, Arch],
    tokens: np.ndarray,
    max_tokens: int | None = None,
) -> dict[str, float]:
    return {
        k: split_ppl(
            model, params, config.space, a, tokens, config.data.eval_batch_size, max_tokens
        )
        for k, a in archs.items()
    }


def params_fingerprint(params) -> str:
    """A short hash of every weight (names, shapes and bytes): which trained model this is."""
    h = hashlib.sha1()
    for path, leaf in sorted(
        (jax.tree_util.keystr(k), v) for k, v in jax.tree_util.tree_leaves_with_path(params)
    ):
        a = np.asarray(leaf)
        h.update(f"{path}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


class Evaluator:
    """Perplexity of subnets of one trained run (supernet or from-scratch).

    Scores are kept in `scores` (`ScoreCache`): in memory, and each new one appended at
    once to `ppl_cache.jsonl` beside the run (or in `cache_dir`), where parallel searches
    sharing the folder see it before they would score it again."""

    def __init__(
        self,
        workdir: str | Path,
        data_dir: str | None = None,
        expect_space: str | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.workdir = Path(workdir)
        desc = read_run_config(self.workdir)
        self.config = RunConfig.from_dict(desc["config"])
        self.space = self.config.space
        if expect_space is not None and self.space.name != expect_space:
            raise CheckpointError(
                f"checkpoint '{workdir}' was trained on search space '{self.space.name}', not "
                f"'{expect_space}'; pass a checkpoint of preset '{expect_space}' or use "
                f"--preset {self.space.name}"
            )
        self.from_scratch = (
            Arch.from_dict(desc["from_scratch"]) if desc.get("from_scratch") else None
        )
        self.corpus = load_corpus(data_dir or self.config.data.data_dir or None)
        if self.corpus.vocab_size != desc["vocab_size"]:
            raise CheckpointError(
                f"data has a vocabulary of {self.corpus.vocab_size} words but '{workdir}' was "
                f"trained on {desc['vocab_size']}: wrong --data-dir?"
            )
        self.model = make_model(self.config, self.corpus.vocab_size)
        self.params, self.step = restore_params(self.workdir, self.model, self.space)
        # whose numbers a cache entry holds: two runs (a supernet and its from-scratch twin,
        # both at step 2,000) may share one cache file, so the key names the weights
        self.fingerprint = params_fingerprint(self.params)
        self._buckets: dict[tuple[int, int], tuple[TransformerLM, dict]] = {}
        self.scores = ScoreCache(cache_dir or self.workdir)

    def _key(self, arch: Arch, split: str, max_tokens: int | None, int8: bool = False) -> str:
        key = f"{self.fingerprint}|{self.step}|{split}|{max_tokens or 0}|{arch.to_json()}"
        if int8:
            from cosearch.supernet.quant import RECIPE

            key = f"{RECIPE}|{key}"
        return key

    def has_windows(
        self, arch: Arch, split: str = "valid", max_tokens: int | None = None, int8: bool = False
    ) -> bool:
        """Whether `windows` of these arguments is already scored (costs nothing)."""
        return self._key(arch, split, max_tokens, int8) in self.scores

    def perplexity(
        self, arch: Arch, split: str = "valid", max_tokens: int | None = None, *, save: bool = True
    ) -> float:
        """Word-level perplexity of `arch` on `split` (first `max_tokens` tokens, or all)."""
        return self.windows(arch, split, max_tokens, save=save).ppl

    def windows(
        self,
        arch: Arch,
        split: str = "valid",
        max_tokens: int | None = None,
        *,
        save: bool = True,
        int8: bool = False,
    ) -> Windows:
        """Per-window NLL sums of `arch` on `split`; every arch of one (split, max_tokens)
        is scored on the same windows, so differences between archs are paired. `int8`:
        of the post-training int8 model (`cosearch.supernet.quant`), on the same windows.
        `save=False` keeps a new score in memory only."""
        self.space.validate(arch)
        if self.from_scratch is not None and arch != self.from_scratch:
            raise CheckpointError(
                f"'{self.workdir}' is a from-scratch model of "
                f"{self.from_scratch.short()}, not a supernet"
            )
        key = self._key(arch, split, max_tokens, int8)
        if key not in self.scores:
            self.scores.refresh()  # another process (a parallel search) may have scored it
        if key not in self.scores:
            w = (self._int8_windows if int8 else self._float_windows)(arch, split, max_tokens)
            self.scores.put(key, w.to_dict(), write=save)
        return Windows.from_dict(self.scores[key])

    def _float_windows(self, arch: Arch, split: str, max_tokens: int | None) -> Windows:
        tokens = self.corpus.split(split)
        n = len(tokens) if max_tokens is None else min(max_tokens, len(tokens))
        bs = self.config.data.eval_batch_size
        if n < DENSE_FROM_TOKENS:
            model, params, masks = self.bucket(arch)
            return split_windows(
                model, params, self.space, arch, tokens, bs, max_tokens, masks=masks
            )
        # long evaluations pay one compile to run the smaller dense subnet instead of the
        # full-width masked supernet (same outputs: tests/test_supernet.py)
        model, params = extract(self.space, {"params": self.params}, arch, self.model)
        try:
            return split_windows(
                model,
                params["params"],
                self.space,
                arch,
                tokens,
                bs,
                max_tokens,
                masked=False,
                step=dense_eval_step,
            )
        finally:
            dense_eval_step.clear_cache()

    def _int8_windows(self, arch: Arch, split: str, max_tokens: int | None) -> Windows:
        """Post-training int8 of the dense subnet, calibrated on the train split (one
        compile per arch: the int8 forward runs the extracted subnet)."""
        from cosearch.supernet.quant import int8_windows

        return int8_windows(
            self.space,
            self.model,
            self.params,
            arch,
            self.corpus.split("train"),
            self.corpus.split(split),
            self.config.data.eval_batch_size,
            max_tokens,
        )

    def bucket(self, arch: Arch) -> tuple[TransformerLM, dict, dict]:
        """(model, params, masks) for a short evaluation of `arch`: the supernet sliced to
        the arch's depth and width with every head and FFN unit (one compile per
        (n_layers, d_model), at most 15 on `cpu`), masked down to the arch's heads and
        FFN widths. Same outputs as the full masked supernet (tests/test_supernet.py) at
        the compute of that depth and width (experiments/bench/eval_bench.py)."""
        n, d = arch.n_layers, arch.d_model
        if (n, d) not in self._buckets:
            log.info("compiling the evaluation of %d-layer, width-%d subnets (once)", n, d)
            wide = Arch(n, d, (self.space.max_heads,) * n, (max(self.space.d_ffn),) * n)
            model, params = extract(self.space, {"params": self.params}, wide, self.model)
            self._buckets[n, d] = (model, params["params"])
        model, params = self._buckets[n, d]
        full = arch_masks(self.space, arch)
        masks = {
            "layer": full["layer"][:n],
            "hidden": full["hidden"][:d],
            "heads": full["heads"][:n],
            "ffn": full["ffn"][:n],
        }
        return model, params, masks


def load_evaluator(
    checkpoint_dir: str | Path,
    data_dir: str | None = None,
    expect_space: str | None = None,
    cache_dir: str | Path | None = None,
) -> Evaluator:
    """An `Evaluator` of a run; its windows cache goes to `cache_dir` (default: the run)."""
    return Evaluator(checkpoint_dir, data_dir, expect_space, cache_dir)
