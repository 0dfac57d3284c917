"""Count-based baselines: proper distributions and known answers on made-up streams."""

import numpy as np
import pytest

from cosearch.ngram import NGramModel

V = 7
TRAIN = np.array([0, 1, 2, 0, 1, 3, 0, 1, 2, 4, 5, 0, 2, 1, 0, 1, 2, 6, 0, 1], np.int32)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("context", [(0, 1), (1, 2), (5, 6), (6, 6)])  # seen and unseen
def test_distribution_sums_to_one_for_every_context(order, context):
    m = NGramModel(order, V).fit(TRAIN)
    probs = [np.exp(m.token_log_probs(np.array([*context, w]))[-1]) for w in range(V)]
    assert np.all(np.array(probs) > 0) or order == 1
    assert sum(probs) == pytest.approx(1.0, abs=1e-9)


def test_unigram_is_maximum_likelihood():
    m = NGramModel(1, V).fit(TRAIN)
    counts = np.bincount(TRAIN, minlength=V)
    test = np.array([3, 0, 1, 2])
    expected = np.exp(-np.mean(np.log(counts[test[1:]] / counts.sum())))
    assert m.perplexity(test) == pytest.approx(expected)


def test_kneser_ney_bigram_known_value():
    # p(1 | 0) = (c(0 1) - D)/c(0 .) + D N1+(0 .)/c(0 .) p_cont(1), by hand
    m = NGramModel(2, V).fit(TRAIN)
    bigrams = list(zip(TRAIN[:-1], TRAIN[1:]))
    c01 = bigrams.count((0, 1))
    c0 = sum(1 for a, _ in bigrams if a == 0)
    n0 = len({b for a, b in bigrams if a == 0})
    distinct = set(bigrams)
    cont = np.array([len({a for a, b in distinct if b == w}) for w in range(V)], float)
    d1 = m.d1
    p_cont1 = (np.maximum(cont - d1, 0) + d1 * (cont > 0).sum() / V) / cont.sum()
    expected = (c01 - m.d2) / c0 + m.d2 * n0 / c0 * p_cont1[1]
    assert np.exp(m.token_log_probs(np.array([0, 1]))[0]) == pytest.approx(expected)


def test_higher_order_fits_training_text_better():
    ppl = [NGramModel(o, V).fit(TRAIN).perplexity(TRAIN) for o in (1, 2, 3)]
    assert ppl[0] > ppl[1] > ppl[2]


def test_bad_order_is_refused():
    with pytest.raises(ValueError, match="order 4"):
        NGramModel(4, V).fit(TRAIN)
