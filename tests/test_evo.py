"""NSGA-II loop, problem and reports on toy problems: hypervolume, determinism, resume."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from cosearch.evo.nsga2 import CheckpointError, Settings, evolve
from cosearch.evo.pareto import (
    Baseline,
    edp_reductions,
    heterogeneity,
    hypervolume,
    nondominated,
    pareto_front,
    summary_markdown,
)
from cosearch.evo.problem import PENALTY, Evaluation, Problem, SearchError
from cosearch.evo.toys import ZDT1, ToyCoster, toy_perplexity
from cosearch.space import Arch, get_space

TINY = get_space("tiny")


class Interrupt(Exception):
    pass


# ----- pareto helpers ---------------------------------------------------------------------
def test_nondominated_and_hypervolume_by_hand():
    pts = [(1, 3), (2, 2), (3, 1), (2.5, 2.5), (2, 2)]
    assert nondominated(pts) == [0, 1, 2]
    # Staircase under ref (4, 4): 3*1 + 2*1 + 1*1 ... = area dominated by the 3 points.
    assert hypervolume(pts, (4, 4)) == pytest.approx(3 + 2 + 1)
    assert hypervolume(pts, (4, 4), normalize=True) == pytest.approx(6 / 16)
    assert hypervolume([(5, 5)], (4, 4)) == 0.0
    assert hypervolume([(1, 1, 1)], (2, 2, 2)) == pytest.approx(1.0)


def _ev(arch: Arch, ppl: float, edp: float, hw: str = "hw") -> Evaluation:
    return Evaluation(arch, hw, ppl, edp, 1.0, edp, 1, 1)


def test_edp_reduction_and_heterogeneity():
    big = Arch(2, 32, (2, 2), (64, 64))
    mixed = Arch(2, 32, (1, 2), (32, 64))
    small = Arch(1, 16, (1,), (32,))
    front = [_ev(big, 10.0, 8.0), _ev(mixed, 10.08, 4.0), _ev(small, 10.9, 1.0)]
    rows = {r["budget"]: r for r in edp_reductions(front, Baseline("b", "hw", 10.0, 8.0))}
    assert rows["+0.1 ppl"]["reduction"] == pytest.approx(2.0)
    assert rows["+0.1 ppl"]["arch"] == mixed.short()
    assert rows["+1 ppl"]["reduction"] == pytest.approx(8.0)
    assert rows["+0.1 %"]["reduction"] == pytest.approx(1.0)  # only the baseline itself
    assert rows["+1 %"]["reduction"] == pytest.approx(2.0)
    het = heterogeneity(front)
    assert het["n_multilayer"] == 2 and het["heterogeneous_share"] == pytest.approx(0.5)
    assert het["heads_seen"] == [1, 2]


def test_settings_reject_bad_population():
    with pytest.raises(ValueError, match="multiple of 4"):
        Settings(population=42)


# ----- the loop on ZDT1 (known front) -----------------------------------------------------
def test_nsga2_reaches_95_percent_of_true_hypervolume():
    toy = ZDT1()
    ref = (1.1, 1.1)
    res = evolve(toy, Settings(population=40, generations=40, seed=1), ref, progress=False)
    frac = hypervolume(res.fitness, ref) / hypervolume(toy.true_front(), ref)
    assert frac >= 0.95, frac
    hv = [r["hypervolume"] for r in res.history]
    assert len(hv) == 41 and hv[-1] > hv[0]


def test_two_point_crossover_also_converges():
    toy = ZDT1()
    res = evolve(
        toy,
        Settings(population=40, generations=40, seed=2, crossover="two-point"),
        (1.1, 1.1),
        progress=False,
    )
    assert hypervolume(res.fitness, (1.1, 1.1)) / hypervolume(toy.true_front(), (1.1, 1.1)) > 0.9


def test_same_seed_same_front_other_seed_differs():
    runs = [
        evolve(ZDT1(), Settings(population=12, generations=8, seed=s), (1.1, 1.1), progress=False)
        for s in (3, 3, 4)
    ]
    assert runs[0].genomes == runs[1].genomes and runs[0].fitness == runs[1].fitness
    assert runs[0].genomes != runs[2].genomes


def test_resume_after_interruption_gives_identical_result(tmp_path):
    s = Settings(population=12, generations=10, seed=5)
    full = evolve(ZDT1(), s, (1.1, 1.1), checkpoint=tmp_path / "a.json", progress=False)

    def stop(gen, row):
        if gen == 4:
            raise Interrupt

    ck = tmp_path / "b.json"
    with pytest.raises(Interrupt):
        evolve(ZDT1(), s, (1.1, 1.1), checkpoint=ck, on_generation=stop, progress=False)
    assert json.loads(ck.read_text())["generation"] == 4
    toy = ZDT1()
    resumed = evolve(toy, s, (1.1, 1.1), checkpoint=ck, resume=True, progress=False)
    assert resumed.genomes == full.genomes and resumed.fitness == full.fitness
    assert [r["hypervolume"] for r in resumed.history] == [r["hypervolume"] for r in full.history]
    # the problem's state came back with the checkpoint: same total work as the full run
    assert toy.calls == json.loads((tmp_path / "a.json").read_text())["problem"]["calls"]
    with pytest.raises(CheckpointError, match="population"):
        evolve(
            ZDT1(),
            Settings(population=16, generations=10, seed=5),
            (1.1, 1.1),
            checkpoint=ck,
            resume=True,
            progress=False,
        )
    longer = evolve(
        ZDT1(),
        Settings(population=12, generations=12, seed=5),
        (1.1, 1.1),
        checkpoint=ck,
        resume=True,
        progress=False,
    )
    assert len(longer.history) == 13


# ----- the co-search problem on the tiny space (enumerable: known front) -------------------
class Hw:
    def __init__(self, sp, acc):
        self.sp_kib, self.acc_kib, self.pe_rows, self.pe_cols = sp, acc, 16, 16
        self.name = f"gemmini-{sp}k-{acc}k"


def _all_archs(space):
    for n in space.layers:
        for d in space.d_model:
            for hs in itertools.product(space.heads, repeat=n):
                for fs in itertools.product(space.d_ffn, repeat=n):
                    yield Arch(n, d, hs, fs)


def test_problem_search_finds_the_enumerated_front():
    hw = Hw(64, 256)
    prob = Problem(TINY, toy_perplexity(TINY), ToyCoster(TINY), hw=hw)
    everything = prob.evaluate_pairs([(a, hw) for a in _all_archs(TINY)])
    assert len(everything) == TINY.size() == 84
    true = [(e.ppl, e.edp) for e in pareto_front(everything, ("ppl", "edp"))]
    ref = tuple(1.1 * max(v) for v in zip(*[(e.ppl, e.edp) for e in everything], strict=True))

    prob = Problem(TINY, toy_perplexity(TINY), ToyCoster(TINY), hw=hw)
    res = evolve(prob, Settings(population=16, generations=15, seed=0), ref, progress=False)
    assert hypervolume(res.fitness, ref) >= 0.95 * hypervolume(true, ref)
    assert prob.timers.ppl_calls == len(prob.ppl_cache) <= 84  # cached by arch


def test_problem_constraints_cache_and_state():
    hw = Hw(64, 256)
    ppl = toy_perplexity(TINY)
    limit = ppl(TINY.largest()) + 1.0
    prob = Problem(TINY, ppl, ToyCoster(TINY), hw=hw, max_ppl=limit)
    big, small = prob.encode(TINY.largest()), prob.encode(TINY.smallest())
    (fb, fs) = prob.evaluate_fitness([big, small])
    assert fb == (ppl(TINY.largest()), prob.cache[(TINY.largest(), hw.name)].edp)
    assert fs[0] >= PENALTY and fs[0] == fs[1]  # infeasible: the penalty on every objective
    assert prob.evaluate([big])[0].feasible and not prob.evaluate([small])[0].feasible
    clone = Problem(TINY, ppl, ToyCoster(TINY), hw=hw, max_ppl=limit)
    clone.load_state_dict(json.loads(json.dumps(prob.state_dict())))
    assert [e.to_dict() for e in clone.evaluations()] == [e.to_dict() for e in prob.evaluations()]
    # Over the latency limit: infeasible without spending a perplexity evaluation.
    lat_small = ToyCoster(TINY).cost(TINY.smallest(), hw).latency_s
    calls = []
    fast = Problem(
        TINY,
        lambda a: calls.append(a) or ppl(a),
        ToyCoster(TINY),
        hw=hw,
        max_latency_s=lat_small * 1.01,
    )
    e_big, e_small = fast.evaluate([big, small])
    assert not e_big.feasible and math.isnan(e_big.ppl) and e_small.feasible
    assert calls == [TINY.smallest()]
    with pytest.raises(SearchError, match="objectives"):
        Problem(TINY, ppl, ToyCoster(TINY), hw=hw, objectives=("ppl", "speed"))
    with pytest.raises(SearchError, match="exactly one"):
        Problem(TINY, ppl, ToyCoster(TINY))


def test_problem_archs_that_cannot_run_are_infeasible(caplog):
    """A cost marked as not runnable (a softmax or LayerNorm row that does not fit the
    accumulator, cosearch.hw.cost_model.norm_capacity) is infeasible whatever its
    perplexity, which is not evaluated; the reason is logged once per config."""
    from cosearch.hw.lut import Coster
    from cosearch.space import PRESETS

    paper = PRESETS["paper"]
    calls = []
    prob = Problem(
        paper,
        lambda a: calls.append(a) or 100.0,
        Coster(paper, seq_len=512, backend="analytical"),
        hw="gemmini-256k-32k",
    )
    with caplog.at_level("WARNING"):
        evs = prob.evaluate([prob.encode(paper.largest()), prob.encode(paper.smallest())])
    assert all(not e.feasible and math.isnan(e.ppl) for e in evs) and not calls
    assert evs[0].violation == pytest.approx(1.0)  # 512 rows needed, 256 there
    assert sum("cannot run" in r.message for r in caplog.records) == 2  # two reasons
    assert sum(prob.cannot_run.values()) == 2
    ok = Problem(
        paper,
        lambda a: 100.0,
        Coster(paper, seq_len=512, backend="analytical"),
        hw="gemmini-64k-256k",
    )
    assert ok.evaluate([ok.encode(paper.largest())])[0].feasible


def test_problem_hw_genes_and_budget():
    gemmini = pytest.importorskip("cosearch.hw.gemmini")
    space = gemmini.HwSearchSpace(sp_kib=(32, 64, 256), acc_kib=(64, 256), budget_kib=320)
    prob = Problem(
        TINY,
        toy_perplexity(TINY),
        ToyCoster(TINY),
        hw_space=space,
        objectives=("ppl", "edp", "energy"),
    )
    assert len(prob.gene_cardinalities) == len(TINY.gene_cardinalities) + 3
    ok = prob.encode(TINY.largest(), gemmini.get_hw("gemmini-64k-256k"))
    over = ok[:-3] + [2, 1, 0]  # 256 + 256 KiB > 320 KiB
    e_ok, e_over = prob.evaluate([ok, over])
    assert e_ok.feasible and e_ok.hw == "gemmini-64k-256k"
    assert not e_over.feasible and e_over.violation == pytest.approx(512 / 320 - 1)
    assert math.isnan(e_over.edp)  # over-budget hardware is never costed
    if "budget_mm2" in gemmini.HwSearchSpace.__dataclass_fields__:  # area budget too
        thesis = gemmini.get_hw("gemmini-64k-256k")
        tight = Problem(
            TINY,
            toy_perplexity(TINY),
            ToyCoster(TINY),
            hw_space=type(space)(sp_kib=(64,), acc_kib=(256,), budget_mm2=1.0),
        )
        (e,) = tight.evaluate([TINY.encode(TINY.largest()) + [0, 0, 0]])  # over the budget
        assert e.hw == thesis.name and not e.feasible
        assert e.violation == pytest.approx(thesis.area_mm2() / 1.0 - 1)
    res = evolve(
        prob, Settings(population=8, generations=3, seed=0), (1e3, 1.0, 1.0), progress=False
    )
    assert all(len(g) == len(prob.gene_cardinalities) for g in res.genomes)


def test_summary_shows_point_estimate_rows_as_deltas_without_se():
    """A point-estimate pick (a predictor run) reads as the Δ to its baseline and the
    allowance over it, marked as a point, not as the pick's absolute perplexity."""
    big, small = Arch(2, 32, (2, 2), (64, 64)), Arch(1, 16, (1,), (32,))
    base = Baseline("predictor largest", "hw", 100.0, 8.0)
    front = [_ev(big, 100.0, 8.0), _ev(small, 100.9, 2.0)]
    rows = [
        {**r, "method": "search/front point estimates (not paired)"}
        for r in edp_reductions(front, base)
    ]
    text = summary_markdown(
        header={},
        front=front,
        baselines=[base],
        histories={},
        n_evaluated=2,
        regime="optimal",
        reductions=rows,
        ppl_source="predictor",
    )
    line = next(x for x in text.splitlines() if "| +1 % |" in x)
    cells = [c.strip() for c in line.split("|")]
    assert cells[5] == "1.000" and cells[7] == "+0.900 (point)" and cells[8] == "4.00x"
