import numpy as np
import pytest

from cosearch.config import PRESETS, RunConfig, get_preset, override
from cosearch.data import (
    DataError,
    eval_batches,
    load_corpus,
    perplexity,
    resolve_data_dir,
    train_batch,
)
from cosearch.registry import UnknownNameError


def test_tiny_corpus_loads_with_eos_and_frequency_sorted_vocab(tiny_data):
    c = load_corpus(str(tiny_data))
    lines = (tiny_data / "wiki.train.tokens").read_text().splitlines()
    n_words = sum(len(line.split()) + 1 for line in lines)
    assert len(c.train) == n_words
    assert "<eos>" in c.vocab
    counts = np.bincount(c.train, minlength=c.vocab_size)
    assert (np.diff(counts) <= 0).all()  # id 0 is the most frequent word
    assert c.vocab_size == PRESETS["tiny"].space.vocab
    assert c.valid.max() < c.vocab_size and c.test.max() < c.vocab_size


def test_corpus_disk_cache_round_trips_and_leaves_no_temp_file(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COSEARCH_CACHE", str(tmp_path / "cache"))
    load_corpus.cache_clear()
    try:
        built = load_corpus(str(tiny_data))
        files = sorted(p.name for p in (tmp_path / "cache").iterdir())
        assert len(files) == 1 and files[0].endswith(".npz") and ".tmp" not in files[0]
        load_corpus.cache_clear()
        cached = load_corpus(str(tiny_data))  # read back from disk this time
        assert cached.vocab == built.vocab
        for split in ("train", "valid", "test"):
            np.testing.assert_array_equal(getattr(cached, split), getattr(built, split))
    finally:
        load_corpus.cache_clear()


def test_train_batches_are_deterministic_windows(tiny_data):
    c = load_corpus(str(tiny_data))
    x1, y1 = train_batch(c.train, 4, 16, seed=3, step=7)
    x2, y2 = train_batch(c.train, 4, 16, seed=3, step=7)
    x3, _ = train_batch(c.train, 4, 16, seed=3, step=8)
    assert (x1 == x2).all() and (y1 == y2).all() and not (x1 == x3).all()
    assert (x1[:, 1:] == y1[:, :-1]).all()  # targets are the next words
    assert x1.shape == (4, 16)


def test_eval_batches_cover_every_target_once(tiny_data):
    c = load_corpus(str(tiny_data))
    n = 0
    targets = []
    for x, y, w in eval_batches(c.valid, 3, 16):
        assert x.shape == y.shape == w.shape == (3, 16)
        n += w.sum()
        targets.append(y[w > 0])
    assert n == len(c.valid) - 1
    assert (np.concatenate(targets) == c.valid[1:]).all()
    m = sum(w.sum() for _, _, w in eval_batches(c.valid, 3, 16, max_tokens=50))
    assert m == 50


def test_perplexity_helper():
    assert perplexity(0.0, 10) == 1.0
    assert abs(perplexity(10 * np.log(5), 10) - 5) < 1e-9
    with pytest.raises(ValueError):
        perplexity(1.0, 0)


def test_missing_data_dir_says_what_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("COSEARCH_DATA", raising=False)
    with pytest.raises(DataError, match="--data-dir DIR or set COSEARCH_DATA"):
        resolve_data_dir(None)
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")
    (tmp_path / "wiki.train.tokens").write_text("a b\n")
    with pytest.raises(DataError, match="lacks wiki.valid.tokens, wiki.test.tokens"):
        resolve_data_dir(tmp_path)


def test_env_var_sets_data_dir(tiny_data, monkeypatch):
    monkeypatch.setenv("COSEARCH_DATA", str(tiny_data))
    assert resolve_data_dir(None) == tiny_data


def test_presets_and_overrides():
    cfg = override(
        get_preset("cpu"), ["train.lr=3e-4", "model.cutoffs=100,200", "train.distill=false"]
    )
    assert cfg.train.lr == 3e-4 and cfg.model.cutoffs == (100, 200)
    assert cfg.train.distill is False
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert get_preset("paper").space.name == "paper"
    with pytest.raises(UnknownNameError, match="known: cpu, paper, tiny"):
        get_preset("medium")
    with pytest.raises(KeyError, match="no field 'lrr'"):
        override(cfg, ["train.lrr=1"])
    with pytest.raises(KeyError, match="no section"):
        override(cfg, ["optim.lr=1"])
    with pytest.raises(ValueError, match="section.field=value"):
        override(cfg, ["lr=1"])
    with pytest.raises(ValueError, match="expected int"):
        override(cfg, ["train.steps=many"])
