"""Budget picks are decided on re-evaluated, paired numbers (made-up windows)."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.evo.budgets import Candidate, budget_picks
from cosearch.space import Arch
from cosearch.stats import Windows

K, N = 400, 128  # windows, tokens per window
BASE = 5.0  # baseline NLL per token: ppl e^5 = 148.4


def _arch(i: int) -> Arch:
    return Arch(1, 16 * (i + 1), (1,), (32,))


def _windows(delta_ppl: float, noise: float, seed: int) -> Windows:
    """Windows whose perplexity is exactly exp(BASE) + delta_ppl, with zero-sum noise."""
    e = np.random.default_rng(seed).normal(0, noise, K)
    r = np.log(np.exp(BASE) + delta_ppl)
    return Windows(N * (r + e - e.mean()), np.full(K, float(N)))


def test_membership_is_decided_on_the_final_split_not_the_search_estimate():
    # A: cheapest; looks within +1 ppl on the search tokens (+0.5) but is +3 on the
    # final split. B: search estimate +2.5 (outside the budget by noise) but +0.6 on the
    # final split. C: dearest, safely inside. The pick at +1 ppl must be B.
    search = {_arch(0): 0.5, _arch(1): 2.5, _arch(2): 0.1}
    final = {_arch(0): 3.0, _arch(1): 0.6, _arch(2): 0.1}
    cands = [Candidate(_arch(0), 1.0), Candidate(_arch(1), 2.0), Candidate(_arch(2), 3.0)]
    rows = budget_picks(
        cands,
        baseline_edp=4.0,
        search_windows=lambda a: _windows(search[a], 0.3, hash(a) % 1000),
        baseline_search=_windows(0.0, 0.3, 7),
        final_windows=lambda a: _windows(final[a], 0.3, hash(a) % 1000 + 1),
        baseline_final=_windows(0.0, 0.3, 8),
        budgets=[("+1 ppl", 1.0, False), ("+0.01 ppl", 0.01, False)],
        n_boot=200,
    )
    one, tiny = rows
    assert one["arch"] == _arch(1).short()
    assert one["delta_ppl_full"] == pytest.approx(0.6, abs=1e-9)
    assert one["reduction"] == pytest.approx(2.0)
    assert one["delta_ppl_se"] > 0 and one["budget_ppl"] == 1.0
    lo, hi = one["reduction_ci"]
    assert lo <= one["reduction"] <= hi
    assert tiny["arch"] is None and tiny["reduction"] is None  # nothing within +0.01


def test_noise_band_keeps_a_candidate_a_point_prefilter_would_drop():
    # the only candidate within budget has a search estimate 2 SE above the allowance
    search_w = _windows(4.0, 0.3, 1)
    base_search = _windows(0.0, 0.3, 2)
    from cosearch.stats import paired_delta

    d, se = paired_delta(search_w, base_search)
    assert d > 1.0 and d - 3 * se < 1.0  # outside on the point estimate, inside the band

    def pick(band: float) -> dict:
        (row,) = budget_picks(
            [Candidate(_arch(0), 1.0)],
            2.0,
            lambda a: search_w,
            base_search,
            lambda a: _windows(0.5, 0.05, 3),
            _windows(0.0, 0.05, 4),
            budgets=[("+1 ppl", 1.0, False)],
            n_boot=100,
            band=band,
        )
        return row

    wide = pick(3.0)
    assert wide["arch"] == _arch(0).short() and wide["candidates"] == 1
    narrow = [pick(0.0)]
    assert narrow[0]["arch"] is None  # a point pre-filter loses the true pick


def test_pick_near_the_edge_is_flagged():
    rows = budget_picks(
        [Candidate(_arch(0), 1.0)],
        2.0,
        lambda a: _windows(0.9, 0.3, 1),
        _windows(0.0, 0.3, 2),
        lambda a: _windows(0.95, 0.3, 3),
        _windows(0.0, 0.3, 4),
        budgets=[("+1 ppl", 1.0, False)],
        n_boot=200,
    )
    assert rows[0]["near_edge"] is True and 0 < rows[0]["pick_rate"] < 1


def _screen_case(**kw) -> tuple[dict, list]:
    # four candidates in EDP order whose search estimates all sit inside the band; on
    # the screen (and the final split) the first two are far over +1 ppl (+6, +5), the
    # third is inside (+0.4), the fourth safely inside (+0.1)
    final = {_arch(0): 6.0, _arch(1): 5.0, _arch(2): 0.4, _arch(3): 0.1}
    scored = []

    def final_w(a):
        scored.append(a)
        return _windows(final[a], 0.05, hash(a) % 1000)

    (row,) = budget_picks(
        [Candidate(_arch(i), float(i + 1)) for i in range(4)],
        10.0,
        lambda a: _windows(0.5, 0.3, 1),  # one search estimate for all: EDP order
        _windows(0.0, 0.3, 2),
        final_w,
        _windows(0.0, 0.05, 4),
        budgets=[("+1 ppl", 1.0, False)],
        n_boot=100,
        **kw,
    )
    return row, scored


def test_screen_skips_final_scores_of_candidates_far_over_the_budget():
    plain, scored_plain = _screen_case()
    screened, scored = _screen_case(
        screens=[
            (
                lambda a: _windows({_arch(0): 6.0, _arch(1): 5.0}.get(a, 0.3), 0.1, 9),
                _windows(0.0, 0.1, 9),
            )
        ]
    )
    # same pick, but the two hopeless candidates never reached the final split
    assert plain["arch"] == screened["arch"] == _arch(2).short()
    assert _arch(0) in scored_plain and _arch(0) not in scored and _arch(1) not in scored
    assert screened["screened_out"] == 2 and plain["screened_out"] == 0
    assert screened["re_evaluated"] == plain["re_evaluated"] - 2


def test_screen_stages_run_smallest_first_and_drop_at_the_first_failing_stage():
    # stage 1 (noisy) sees only arch 0 as hopeless; stage 2 (sharper) also drops arch 1
    # (+5 on the final split, but +1.5 ± a wide SE on stage 1); arch 0 never reaches stage 2
    asked = {1: [], 2: []}

    def stage(i, noise, seen):
        def w(a):
            asked[i].append(a)
            return _windows(seen.get(a, 0.3), noise, 9)

        return w

    # stage 1's baseline has its own noise (paired SE ~0.5 ppl), stage 2's the arch's own
    stage1 = (stage(1, 0.05, {_arch(0): 6.0, _arch(1): 1.5}), _windows(0.0, 0.05, 10))

    shown = []  # the progress display's calls
    screened, scored = _screen_case(
        screens=[
            stage1,
            (stage(2, 0.05, {_arch(0): 6.0, _arch(1): 5.0}), _windows(0.0, 0.05, 9)),
        ],
        on_screen=lambda i: shown.append(i),
        on_budget=lambda label: shown.append(label),
    )
    assert _arch(0) in asked[1] and _arch(0) not in asked[2] and _arch(1) in asked[2]
    # one call per new screen, by stage, after the budget's own
    assert shown[0] == "+1 ppl" and shown[1:].count(0) == len(asked[1])
    assert shown[1:].count(1) == len(asked[2])
    assert _arch(0) not in scored and _arch(1) not in scored
    assert screened["screened_out"] == 2 and screened["arch"] == _arch(2).short()
    one_stage, scored_one = _screen_case(screens=[stage1])
    assert _arch(1) in scored_one and one_stage["screened_out"] == 1


def test_cap_on_final_scores_is_reported():
    row, scored = _screen_case(max_evals=2)
    # the two cheapest are over budget and the cap stops the scan before the third
    assert len(scored) == 2 and row["capped"] is True and row["arch"] is None
    row, _ = _screen_case(max_evals=10)
    assert row["capped"] is False and row["arch"] == _arch(2).short()


def test_scores_at_hand_come_first_and_do_not_count_to_the_cap():
    # the dearest candidate's final score is already at hand (a re-evaluated front
    # member): it is the first pick, free; the one new score allowed then goes to the
    # cheapest remaining candidate (over budget) and the cap stops the scan there
    row, scored = _screen_case(max_evals=1, is_cached=lambda a: a == _arch(3))
    assert scored == [_arch(3), _arch(0)]
    assert row["arch"] == _arch(3).short() and row["capped"] is True
    # without a cap the same best-first scan ends on the lowest-EDP pass
    row, _ = _screen_case(is_cached=lambda a: a == _arch(3))
    assert row["arch"] == _arch(2).short() and row["capped"] is False


def _row(reduction, ci=None, arch=None):
    return {
        "budget_ppl": 1.0,
        "reduction": reduction,
        "reduction_ci": ci,
        "arch": arch,
        "edp": None if reduction is None else 1.0 / reduction,
        "delta_ppl_full": None if reduction is None else 0.5,
        "delta_ppl_se": None if reduction is None else 0.2,
        "near_edge": None if reduction is None else False,
    }


def test_seeds_combine_to_the_median_pick_and_the_union_of_intervals():
    from cosearch.evo.budgets import combine_seeds

    e = combine_seeds([_row(2.0, [1.5, 2.5], "a"), _row(None), _row(3.0, [2.0, 3.5], "b")])
    # of the two picking seeds (2.0, 3.0) the lower middle one: a pick that was made
    assert e["reduction"] == pytest.approx(2.0)
    assert e["arch"] == "a"
    assert e["reduction_ci"] == [1.5, 3.5]
    assert (e["n_seeds"], e["n_seeds_with_pick"]) == (3, 2)
    assert e["per_seed_reduction"] == [2.0, None, 3.0]
    none = combine_seeds([_row(None), _row(None)])
    assert none["reduction"] is None and none["reduction_ci"] is None
