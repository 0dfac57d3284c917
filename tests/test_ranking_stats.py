"""The ranking study's statistics (experiments/ranking/run.py) on made-up windows."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.stats import Windows

K, N = 300, 128


@pytest.fixture(scope="module")
def run(experiment):
    return experiment("ranking/run.py")


def _windows(ppl: float, noise: np.ndarray) -> Windows:
    """Windows whose perplexity is exactly `ppl`; `noise` (zero-mean) is shared by models."""
    return Windows(N * (np.log(ppl) + noise - noise.mean()), np.full(K, float(N)))


def test_rank_stats_of_identical_orders_is_one_and_of_reversed_minus_one(run):
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    same = run.rank_stats(x, x * 3, n_boot=200)
    assert same["kendall_tau"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0)
    assert same["kendall_tau_ci"] == [pytest.approx(1.0), pytest.approx(1.0)]
    rev = run.rank_stats(x, -x, n_boot=200)
    assert rev["kendall_tau"] == pytest.approx(-1.0)


def test_token_noise_resolves_far_pairs_and_flags_a_swapped_close_pair(run):
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.3, K)  # text difficulty: common to every model
    # standalone: 150, 160, 170, 170.05 (the last two a pair no window sample resolves);
    # supernet: same order for the first three, and the unresolved pair swapped
    alone = [_windows(p, shared + rng.normal(0, 0.01, K)) for p in (150, 160, 170, 170.05)]
    inh = [_windows(p, shared + rng.normal(0, 0.01, K)) for p in (155, 165, 176, 175.9)]
    res = run.token_noise(alone, inh, n_boot=300)
    assert res["pairs"] == 6
    by = {(q["i"], q["j"]): q for q in res["pair_rows"]}
    assert by[0, 1]["standalone_delta"] == pytest.approx(-10.0)
    assert by[0, 1]["standalone_resolved"] and by[0, 1]["agree"]
    assert not by[2, 3]["standalone_resolved"] and not by[2, 3]["agree"]
    assert res["pairs_resolved"] == 5 and res["pairs_resolved_agree"] == 5
    assert res["pairs_agree"] == 5
    lo, hi = res["kendall_tau_ci_tokens"]
    assert -1 <= lo <= hi <= 1 and hi == pytest.approx(1.0)
