"""WikiText-2 (word level): reading, vocabulary, batching and perplexity.

Owns turning `wiki.{train,valid,test}.tokens` into integer arrays (one `<eos>` per line,
vocabulary sorted by train frequency, most frequent first, ties in order of first
appearance, so that an adaptive softmax's shortlist is simply the first ids),
deterministic training windows and the evaluation windows of a split. It must not know
about models: batches are plain numpy arrays.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cosearch.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
EOS = "<eos>"
ENV_VAR = "COSEARCH_DATA"
GET_DATA = (
    "WikiText-2 (word level, wikitext-2-v1) is the three files wiki.train.tokens, "
    "wiki.valid.tokens and wiki.test.tokens from the `wikitext-2-v1.zip` archive of "
    "Merity et al. (also on the Hugging Face hub as `Salesforce/wikitext`, config "
    "`wikitext-2-v1`). Put them in one directory and pass --data-dir DIR or set "
    f"{ENV_VAR}=DIR."
)


class DataError(UserError, FileNotFoundError):
    """The data directory is missing or does not hold the expected files."""


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The flag if given, else $COSEARCH_DATA; checks the three split files are there."""
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise DataError(f"no data directory given. {GET_DATA}")
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DataError(f"data directory '{path}' does not exist. {GET_DATA}")
    if not path.is_dir():
        raise DataError(f"data directory '{path}' is a file, not a directory. {GET_DATA}")
    missing = [f"wiki.{s}.tokens" for s in SPLITS if not (path / f"wiki.{s}.tokens").is_file()]
    if missing:
        raise DataError(f"data directory '{path}' lacks {', '.join(missing)}. {GET_DATA}")
    return path


def _read_words(path: Path) -> list[str]:
    """The words of a split file, `<eos>` after every line; a file that is not UTF-8 text
    or has no words is a DataError naming it."""
    words: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                words.extend(line.split())
                words.append(EOS)
    except UnicodeDecodeError as e:
        raise DataError(
            f"'{path}' is not UTF-8 text (byte {e.start}: {e.reason}); WikiText-2's "
            f"files are. {GET_DATA}"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read '{path}': {e.strerror}. {GET_DATA}") from None
    if len(words) == words.count(EOS):
        raise DataError(f"'{path}' holds no words (empty file?). {GET_DATA}")
    return words


def _cache_dir() -> Path:
    root = os.environ.get("COSEARCH_CACHE") or Path.home() / ".cache" / "cosearch"
    return Path(root)


CACHE_FORMAT = 2  # bump when the vocabulary order or array layout changes


def _fingerprint(path: Path) -> str:
    parts = [f"format{CACHE_FORMAT}"]
    for s in SPLITS:
        st = (path / f"wiki.{s}.tokens").stat()
        parts.append(f"{path.resolve()}:{s}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Corpus:
    """Integer token streams of the three splits and the vocabulary."""

    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    source: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"unknown split '{name}'; known: {', '.join(SPLITS)}")
        return getattr(self, name)


def _build(path: Path) -> Corpus:
    words_of = {s: _read_words(path / f"wiki.{s}.tokens") for s in SPLITS}
    counts: dict[str, int] = {}
    for w in words_of["train"]:  # dicts keep first-appearance order: the tie-break
        counts[w] = counts.get(w, 0) + 1
    order = sorted(counts, key=counts.__getitem__, reverse=True)  # stable sort
    index = {w: i for i, w in enumerate(order)}
    arrays = {}
    for s in SPLITS:
        words = words_of[s]
        unknown = {w for w in words if w not in index}
        if unknown:
            raise DataError(
                f"{s} split has {len(unknown)} word(s) absent from train (e.g. "
                f"{sorted(unknown)[:3]}); WikiText-2 has none: is '{path}' the wikitext-2-v1 "
                "release?"
            )
        arrays[s] = np.fromiter((index[w] for w in words), dtype=np.int32, count=len(words))
    return Corpus(tuple(index), arrays["train"], arrays["valid"], arrays["test"], str(path))


@lru_cache(maxsize=4)
def load_corpus(data_dir: str | os.PathLike | None = None) -> Corpus:
    """Load (and cache on disk, keyed by the files' size and mtime) the three splits."""
    path = resolve_data_dir(data_dir)
    cache = _cache_dir() / f"wikitext2-{_fingerprint(path)}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return Corpus(tuple(z["vocab"].tolist()), z["train"], z["valid"], z["test"], str(path))
    log.info("tokenising %s (cached at %s afterwards)", path, cache)
    corpus = _build(path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")  # two jobs may tokenise at once
        np.savez(
            tmp,
            vocab=np.array(corpus.vocab),
            train=corpus.train,
            valid=corpus.valid,
            test=corpus.test,
        )
        os.replace(tmp, cache)
    except OSError as e:  # a read-only home is no reason to fail
        log.warning("could not cache tokenised corpus at %s: %s", cache, e)
    return corpus


def train_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random contiguous windows for step `step`: a pure function of (seed, step), so a
    resumed run sees exactly the batches an uninterrupted one would."""
    n = len(tokens) - seq_len - 1
    if n <= 0:
        raise DataError(f"split of {len(tokens)} tokens is shorter than seq_len+1={seq_len + 1}")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, n + 1, size=batch_size)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    win = tokens[idx]
    return win[:, :-1], win[:, 1:]


def eval_batches(tokens: np.ndarray, batch_size: int, seq_len: int, max_tokens: int | None = None):
    """Non-overlapping windows covering the split (or its first `max_tokens` targets), in
    fixed-shape batches: yields (inputs, targets, weights) with weight 0 on padding."""
    stream = tokens if max_tokens is None else tokens[: max_tokens + 1]
    n_targets = len(stream) - 1
    n_windows = math.ceil(n_targets / seq_len)
    n_batches = math.ceil(n_windows / batch_size)
    total = n_batches * batch_size * seq_len
    inp = np.zeros(total, np.int32)
    tgt = np.zeros(total, np.int32)
    w = np.zeros(total, np.float32)
    inp[:n_targets] = stream[:-1]
    tgt[:n_targets] = stream[1:]
    w[:n_targets] = 1.0
    shape = (n_batches, batch_size, seq_len)
    inp, tgt, w = inp.reshape(shape), tgt.reshape(shape), w.reshape(shape)
    for b in range(n_batches):
        yield inp[b], tgt[b], w[b]


def perplexity(total_nll: float, n_tokens: float) -> float:
    """Word-level perplexity from a summed natural-log NLL over `n_tokens` words."""
    if n_tokens <= 0:
        raise ValueError("perplexity of zero tokens is undefined")
    return float(math.exp(total_nll / n_tokens))
