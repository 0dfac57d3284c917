"""Perplexity budgets decided on re-evaluated, paired numbers, with intervals.

A search scores archs on a few thousand tokens; at that size the paired noise between two
close subnets is larger than a +1 ppl budget. So a budget's pick is not read off the
search estimates: every evaluated arch whose search estimate is within `band` paired
standard errors of the budget is a candidate; candidates are re-scored on the final split
(the whole split by default), best first (scores at hand, then the likeliest to pass,
each pass leaving only cheaper candidates in play), and the pick is the lowest-EDP one
whose final paired difference to the baseline is within the budget. Optionally a candidate is
first screened on middle-sized samples (e.g. 20,000 then 60,000 tokens, smallest first):
one whose screened estimate is still more than `band` SE over the budget at any stage is
dropped without its costly final score;
and the number of final scores per budget may be capped (the row then says `capped`, as
a lower-EDP pick might have been missed). The reduction's interval
comes from a bootstrap over the final split's windows (the pick is made again in each
resample). It must not search or cost hardware: it takes evaluations and windows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cosearch.space import Arch
from cosearch.stats import Windows, bootstrap_weights, interval, paired_delta

# (label, allowance, relative?): +x ppl over the baseline, or +x of its perplexity
BUDGETS: tuple[tuple[str, float, bool], ...] = (
    ("+0.1 ppl", 0.1, False),
    ("+1 ppl", 1.0, False),
    ("+0.1 %", 0.001, True),
    ("+1 %", 0.01, True),
    ("+2 %", 0.02, True),
    ("+5 %", 0.05, True),
)


@dataclass(frozen=True)
class Candidate:
    """One (arch, hw) pair of the search with its cost."""

    arch: Arch
    edp: float
    hw: str | None = None


def _allowance(delta: float, relative: bool, baseline_ppl: np.ndarray | float):
    return baseline_ppl * delta if relative else delta + 0 * baseline_ppl


def budget_picks(
    candidates: Sequence[Candidate],
    baseline_edp: float,
    search_windows: Callable[[Arch], Windows],
    baseline_search: Windows,
    final_windows: Callable[[Arch], Windows],
    baseline_final: Windows,
    budgets: Sequence[tuple[str, float, bool]] = BUDGETS,
    band: float = 3.0,
    n_boot: int = 1000,
    seed: int = 0,
    screens: Sequence[tuple[Callable[[Arch], Windows], Windows]] = (),
    max_evals: int = 0,
    on_eval: Callable[[], None] | None = None,
    is_cached: Callable[[Arch], bool] | None = None,
    on_screen: Callable[[int], None] | None = None,
    on_budget: Callable[[str], None] | None = None,
) -> list[dict]:
    """One row per budget: the pick, its final Δppl and SE, the EDP reduction and its
    bootstrap interval, whether Δppl lies within one SE of the budget's edge. `screens`:
    stages of (windows of an arch, the baseline's windows) on middle-sized samples, smallest
    first, scored before the final split (a candidate dropped at a stage reaches no later
    one); `max_evals`: at most this many final scores per budget (0: no cap);
    `on_eval` is called after each new final score (a progress bar); `is_cached` says
    which archs' final scores are already at hand (free: they do not count to the cap);
    `on_screen(i)` after each new screen at stage i and `on_budget(label)` as each budget
    starts (progress display)."""
    final_cache: dict[Arch, Windows] = {}
    screen_cache: dict[tuple[int, Arch], tuple[float, float]] = {}

    def final(arch: Arch) -> Windows:
        if arch not in final_cache:
            final_cache[arch] = final_windows(arch)
            if on_eval is not None:
                on_eval()
        return final_cache[arch]

    def screened_out(arch: Arch, delta: float, relative: bool) -> bool:
        if arch in final_cache:
            return False
        for i, (windows, base) in enumerate(screens):
            if (i, arch) not in screen_cache:
                screen_cache[i, arch] = paired_delta(windows(arch), base)
                if on_screen is not None:
                    on_screen(i)
            d, se = screen_cache[i, arch]
            if d - band * se > float(_allowance(delta, relative, base.ppl)):
                return True
        return False

    search = {}
    for c in candidates:
        if c.arch not in search:
            search[c.arch] = paired_delta(search_windows(c.arch), baseline_search)
    by_edp = sorted(candidates, key=lambda c: (c.edp, c.arch.to_json()))
    w = bootstrap_weights(len(baseline_final.tokens), n_boot, seed)
    base_boot = np.exp((w @ baseline_final.nll) / (w @ baseline_final.tokens))
    rows = []
    for label, delta, relative in budgets:
        if on_budget is not None:
            on_budget(label)
        allow = float(_allowance(delta, relative, baseline_final.ppl))
        allow_search = float(_allowance(delta, relative, baseline_search.ppl))
        kept = [c for c in by_edp if search[c.arch][0] - band * search[c.arch][1] <= allow_search]
        pick, checked, dropped, capped = _scan(
            kept,
            z={
                c.arch: (search[c.arch][0] - allow_search) / max(search[c.arch][1], 1e-12)
                for c in kept
            },
            allow=allow,
            final_delta=lambda a: paired_delta(final(a), baseline_final),
            screened_out=lambda a, d=delta, r=relative: screened_out(a, d, r),
            free=lambda a: a in final_cache or (is_cached is not None and is_cached(a)),
            max_evals=max_evals,
        )
        boot = []
        for c in checked:
            f = final(c.arch)
            d_boot = np.exp((w @ f.nll) / (w @ f.tokens)) - base_boot
            boot.append(d_boot <= _allowance(delta, relative, base_boot))
        red_boot = np.full(n_boot, np.nan)
        for i, c in reversed(list(enumerate(checked))):  # lowest EDP wins: fill last
            red_boot[boot[i]] = baseline_edp / c.edp
        row = {
            "budget": label,
            "budget_ppl": allow,
            "candidates": len(kept),
            "screened_out": dropped,
            "re_evaluated": len(checked),
            "capped": capped,
            "arch": None,
            "pick_hw": None,
            "edp": None,
            "delta_ppl_full": None,
            "delta_ppl_se": None,
            "reduction": None,
            "reduction_ci": None,
            "pick_rate": float(np.mean(~np.isnan(red_boot))),
            "near_edge": None,
        }
        if pick is not None:
            c, d, se = pick
            ok = red_boot[~np.isnan(red_boot)]
            row.update(
                arch=c.arch.short(),
                pick_hw=c.hw,
                edp=c.edp,
                delta_ppl_full=d,
                delta_ppl_se=se,
                reduction=baseline_edp / c.edp,
                reduction_ci=list(interval(ok)) if len(ok) else None,
                near_edge=bool(abs(d - allow) < se),
            )
        rows.append(row)
    return rows


def _scan(
    kept: Sequence[Candidate],
    z: dict[Arch, float],
    allow: float,
    final_delta: Callable[[Arch], tuple[float, float]],
    screened_out: Callable[[Arch], bool],
    free: Callable[[Arch], bool],
    max_evals: int,
) -> tuple[tuple[Candidate, float, float] | None, list[Candidate], int, bool]:
    """One budget's scan of `kept` (in EDP order): (pick with its Δ and SE, the candidates
    scored on the final split in EDP order, how many the screen dropped, capped?).

    Best first: scores already at hand (`free`), then the candidates likeliest to pass
    (lowest search z); each pass leaves only cheaper candidates in play. Without a cap this
    finds exactly the lowest-EDP candidate that passes on the final split. Past the pick it
    goes on up in EDP until a candidate passes with margin, so that the bootstrap can fall
    back on it where the pick fails a resample."""
    rank = {id(c): i for i, c in enumerate(kept)}
    seen: dict[int, tuple[float, float] | None] = {}
    checked: list[Candidate] = []
    dropped, capped, n_new = 0, False, 0

    def score(c: Candidate) -> tuple[float, float] | None:
        nonlocal dropped, capped, n_new
        if id(c) in seen:
            return seen[id(c)]
        if screened_out(c.arch):
            seen[id(c)] = None
            dropped += 1
            return None
        at_hand = free(c.arch)
        if not at_hand and max_evals and n_new >= max_evals:
            capped = True
            return None
        n_new += 0 if at_hand else 1
        checked.append(c)
        seen[id(c)] = final_delta(c.arch)
        return seen[id(c)]

    pick = None
    pool = list(kept)
    while pool and not capped:
        c = min(pool, key=lambda c: (not free(c.arch), z[c.arch], rank[id(c)]))
        pool.remove(c)
        r = score(c)
        if r is not None and r[0] <= allow:
            pick = (c, *r)
            pool = [o for o in pool if rank[id(o)] < rank[id(c)]]
    if pick is not None and pick[1] + 2 * pick[2] > allow and not capped:
        for c in kept[rank[id(pick[0])] + 1 :]:
            r = score(c)
            if capped or (r is not None and r[0] + 2 * r[1] <= allow):
                break
    checked.sort(key=lambda c: rank[id(c)])
    return pick, checked, dropped, capped


def paired_budgets(
    evaluated: Sequence,
    baselines: Sequence,
    evaluator,
    baseline_evaluator,
    largest: Arch,
    search_tokens: int | None,
    final_tokens: int | None,
    budgets: Sequence[tuple[str, float, bool]] = BUDGETS,
    any_hw: bool = False,
    screen_tokens: Sequence[int] = (),
    max_evals: int = 0,
    on_eval: Callable[[], None] | None = None,
    on_screen: Callable[[int], None] | None = None,
    on_budget: Callable[[str], None] | None = None,
) -> list[dict]:
    """`budget_picks` for each baseline (objects with name, hw, edp) over the evaluated
    pairs on its hardware (with `any_hw`, as in a joint hardware search: over the pairs on
    every config, so a pick may move to other hardware): the supernet's largest arch
    scored by `evaluator`, the from-scratch model by `baseline_evaluator`, both on the
    same windows as the candidates. Baselines with nothing to score windows (a bare
    --baseline-ppl) are skipped. `screen_tokens`: screen candidates on those many
    validation tokens first, in increasing order, each stage where it is fewer than
    `final_tokens` (empty: no screen); `max_evals`, `on_eval`: as in `budget_picks`;
    `on_screen(tokens)` after each new screen, `on_budget("<baseline> on <hw>: <budget>")`
    as each budget starts."""
    stages = sorted({t for t in screen_tokens if t and (final_tokens is None or t < final_tokens)})
    rows = []
    for b in sorted(baselines, key=lambda b: (b.name != "from scratch", b.hw, b.name)):
        ev_b = baseline_evaluator if b.name == "from scratch" else evaluator
        if ev_b is None or not hasattr(ev_b, "windows"):
            continue
        b_arch = getattr(ev_b, "from_scratch", None) or largest
        cands = [
            Candidate(e.arch, e.edp, e.hw)
            for e in evaluated
            if (any_hw or e.hw == b.hw) and e.feasible and np.isfinite(e.edp)
        ]
        picks = budget_picks(
            cands,
            b.edp,
            lambda a: evaluator.windows(a, "valid", search_tokens),
            ev_b.windows(b_arch, "valid", search_tokens),
            lambda a: evaluator.windows(a, "valid", final_tokens),
            ev_b.windows(b_arch, "valid", final_tokens),
            budgets,
            screens=[
                (
                    lambda a, t=t: evaluator.windows(a, "valid", t),
                    ev_b.windows(b_arch, "valid", t),
                )
                for t in stages
            ],
            max_evals=max_evals,
            on_eval=on_eval,
            on_screen=None if on_screen is None else (lambda i: on_screen(stages[i])),
            on_budget=(
                None
                if on_budget is None
                else (lambda label, b=b: on_budget(f"{b.name} on {b.hw}: {label}"))
            ),
            is_cached=(
                (lambda a: evaluator.has_windows(a, "valid", final_tokens))
                if hasattr(evaluator, "has_windows")
                else None
            ),
        )
        base_ppl = ev_b.windows(b_arch, "valid", final_tokens).ppl
        for r in picks:
            rows.append(
                {
                    "baseline": b.name,
                    "hw": b.hw,
                    "baseline_ppl": base_ppl,
                    "baseline_edp": b.edp,
                    "final_tokens": final_tokens or "all",
                    "screen_tokens": ",".join(map(str, stages)) or None,
                    "max_evals": max_evals or None,
                    "method": "paired, re-evaluated on the final split",
                    "candidates_from": "every config" if any_hw else "the baseline's config",
                    **r,
                }
            )
    return rows


def combine_seeds(rows: Sequence[dict | None]) -> dict:
    """One budget's paired rows (from `budget_picks`, one per search seed; None where a
    seed has no row) as one entry: the pick of the median seed among those that made a
    pick (the lower middle one for an even count: a pick that was made, not an average),
    with its arch, reduction and Δppl; the interval spans every picking seed's bootstrap
    interval, so it covers both token resampling and search-seed spread. `reduction` is
    None when no seed picks anything."""
    rows = [r for r in rows if r is not None]
    picked = sorted((r for r in rows if r["reduction"] is not None), key=lambda r: r["reduction"])
    entry = {
        "reduction": None,
        "reduction_ci": None,
        "arch": None,
        "pick_hw": None,
        "edp": None,
        "delta_ppl_full": None,
        "delta_ppl_se": None,
        "near_edge": None,
        "budget_ppl": rows[0]["budget_ppl"] if rows else None,
        "n_seeds": len(rows),
        "n_seeds_with_pick": len(picked),
        "per_seed_reduction": [r["reduction"] for r in rows],
        "per_seed_arch": [r["arch"] for r in rows],
    }
    if picked:
        mid = picked[(len(picked) - 1) // 2]
        cis = [r["reduction_ci"] for r in picked if r["reduction_ci"] is not None]
        entry.update(
            reduction=mid["reduction"],
            reduction_ci=[min(c[0] for c in cis), max(c[1] for c in cis)] if cis else None,
            **{
                k: mid.get(k)
                for k in ("arch", "pick_hw", "edp", "delta_ppl_full", "delta_ppl_se", "near_edge")
            },
        )
    return entry
