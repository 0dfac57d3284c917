"""Paired perplexity statistics (known answers) and the `cosearch.evaluate` command."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.stats import (
    Windows,
    bootstrap_ppl,
    bootstrap_weights,
    interval,
    paired_delta,
    ppl_se,
)


def test_paired_se_known_answer():
    # equal windows of n tokens; b has NLL r per token everywhere, a has r + e_i in window
    # i: ppl(a) - ppl(b) = exp(r + mean e) - exp(r), SE = exp(r + mean e) sd(e) / sqrt(K)
    rng = np.random.default_rng(0)
    K, n, r = 400, 128, 5.0
    e = rng.normal(0.01, 0.05, K)
    tokens = np.full(K, float(n))
    a = Windows(n * (r + e), tokens)
    b = Windows(np.full(K, n * r), tokens)
    delta, se = paired_delta(a, b)
    assert delta == pytest.approx(np.exp(r + e.mean()) - np.exp(r))
    assert se == pytest.approx(np.exp(r + e.mean()) * e.std(ddof=1) / np.sqrt(K))


def test_paired_se_is_zero_for_a_constant_shift_and_bootstrap_agrees():
    rng = np.random.default_rng(1)
    K = 300
    tokens = rng.integers(50, 129, K).astype(float)
    base = tokens * rng.normal(5.0, 0.3, K)
    a, b = Windows(base + 0.02 * tokens, tokens), Windows(base, tokens)
    # the same per-token shift in every window leaves a (near) deterministic difference
    assert paired_delta(a, b)[1] < 0.02 * paired_delta(a, b)[0]
    # unpaired SE of one ppl matches the bootstrap's spread
    w = bootstrap_weights(K, 2000, seed=0)
    boot = bootstrap_ppl(w, b)
    assert ppl_se(b) == pytest.approx(boot.std(), rel=0.1)
    lo, hi = interval(boot)
    assert lo < b.ppl < hi


def test_unpaired_windows_are_refused():
    a = Windows(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="same windows"):
        paired_delta(a, Windows(np.ones(4), np.ones(4)))


def test_evaluate_cli_json(tiny_checkpoint, tiny_data, evaluate_json):
    from cosearch.supernet.evaluate import load_evaluator

    _, printed = evaluate_json("--split", "test")
    assert [set(r) >= {"arch", "split", "tokens", "ppl"} for r in printed] == [True, True]
    ev = load_evaluator(tiny_checkpoint, str(tiny_data))
    space = ev.space
    assert printed[0]["ppl"] == pytest.approx(ev.perplexity(space.largest(), "test"))
    assert printed[1]["ppl"] == pytest.approx(ev.perplexity(space.smallest(), "test"))
    assert printed[0]["tokens"] == len(ev.corpus.test) - 1  # the whole split by default
    assert printed[1]["delta_ppl_vs_first"] == pytest.approx(printed[1]["ppl"] - printed[0]["ppl"])
    assert printed[1]["delta_ppl_se"] >= 0


def test_evaluate_cli_max_tokens_and_inline_json(tiny_checkpoint, tiny_data, capsys):
    from cosearch.evaluate import main

    arch = '{"n_layers": 1, "d_model": 16, "heads": [1], "d_ffn": [32]}'
    rows = main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--data-dir",
            str(tiny_data),
            "--archs",
            f"largest,{arch}",
            "--max-tokens",
            "40",
        ]
    )
    assert [r["tokens"] for r in rows] == [40, 40]
    assert rows[1]["arch"]["d_model"] == 16
    assert "ppl" in capsys.readouterr().out


def test_bucketed_evaluation_equals_the_masked_supernet(tiny_checkpoint, tiny_data):
    """Short evaluations run a depth-and-width slice of the supernet with head/FFN masks;
    per-window NLLs equal the full masked supernet's."""
    import random

    from cosearch.supernet.evaluate import load_evaluator, split_windows

    ev = load_evaluator(tiny_checkpoint, str(tiny_data))
    space, rng = ev.space, random.Random(3)
    archs = {space.largest(), space.smallest(), *(space.sample(rng) for _ in range(12))}
    for arch in archs:
        fast = ev.windows(arch, "valid", 64, save=False)
        full = split_windows(ev.model, ev.params, space, arch, ev.corpus.valid, 4, 64)
        np.testing.assert_allclose(fast.nll, full.nll, rtol=1e-5)
        np.testing.assert_array_equal(fast.tokens, full.tokens)
    assert len(ev._buckets) <= len({(a.n_layers, a.d_model) for a in archs})
