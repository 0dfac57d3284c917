"""experiments/hw_cosearch/analyse.py's joint-vs-fixed verdicts on made-up budget rows."""

from __future__ import annotations

HW = "gemmini-128k-16k"


def _row(baseline, budget, reduction, ci, hw=HW, arch="L1-x"):
    return {
        "baseline": baseline,
        "hw": hw,
        "budget": budget,
        "budget_ppl": 1.0,
        "method": "paired, re-evaluated on the final split",
        "reduction": reduction,
        "reduction_ci": ci,
        "arch": arch if reduction is not None else None,
        "pick_hw": hw if reduction is not None else None,
        "delta_ppl_full": 0.5 if reduction is not None else None,
        "delta_ppl_se": 0.1 if reduction is not None else None,
    }


def test_verdicts_per_baseline_take_the_intervals_into_account(experiment):
    a = experiment("hw_cosearch/analyse.py")
    # (joint, fixed) per budget, against the supernet's largest on HW
    cases = {
        "+0.1 ppl": ((None, None), (None, None)),
        "+1 ppl": ((1.00, [1.0, 1.4]), (1.39, [1.33, 1.54])),  # overlapping intervals
        "+0.1 %": ((1.005, [1.0, 1.01]), (1.0, [1.0, 1.0])),  # within 1 %
        "+1 %": ((2.0, [1.9, 2.1]), (1.5, [1.4, 1.6])),  # disjoint: a real joint gain
        "+2 %": ((1.5, [1.4, 1.6]), (2.0, [1.9, 2.1])),  # disjoint: the fixed one wins
        "+5 %": ((None, None), (3.0, [2.9, 3.1])),
    }
    joint = {"edp_reduction": [], "hw": "search"}
    fixed = {"edp_reduction": [], "hw": HW}
    for budget, ((rj, cj), (rf, cf)) in cases.items():
        joint["edp_reduction"].append(_row("supernet largest", budget, rj, cj))
        fixed["edp_reduction"].append(_row("supernet largest", budget, rf, cf))
        # rows of another baseline and another hw must not be mixed in
        joint["edp_reduction"].append(_row("from scratch", budget, 9.0, [9.0, 9.0]))
        joint["edp_reduction"].append(_row("supernet largest", budget, 9.0, [9, 9], hw="x"))
    got = {c["budget"]: c for c in a.joint_vs_fixed(joint, fixed, HW, "supernet largest")}
    assert got["+0.1 ppl"]["verdict"] == "nothing within budget"
    assert got["+1 ppl"]["verdict"].startswith("fixed higher by 1.390×, within the intervals")
    assert got["+0.1 %"]["verdict"].startswith("hardware-only")
    assert got["+1 %"]["verdict"] == "joint gain 1.333×"
    assert got["+2 %"]["verdict"].startswith("the fixed search does better")
    assert got["+5 %"]["verdict"].startswith("only the fixed search picks")
    assert {c["baseline"] for c in got.values()} == {"supernet largest"}
    # the from-scratch rows exist only in the joint run: no row to compare
    assert a.joint_vs_fixed(joint, fixed, HW, "from scratch") == []


def test_paired_decisions_rescale_to_one_reference_config(experiment):
    """A pick's reduction against the largest arch on another config: EDP ratio to the new
    reference, its interval scaled by the ratio of the two baselines' EDPs."""
    a = experiment("hw_cosearch/analyse.py")
    row = {
        **_row("supernet largest", "+1 %", 2.0, [1.5, 2.5]),
        "baseline_edp": 4.0,
        "edp": 2.0,
    }
    none = {**_row("supernet largest", "+1 %", None, None), "baseline_edp": 4.0, "edp": None}
    got = a.paired_on({"edp_reduction": [row]}, "supernet largest", "+1 %", ref_edp=8.0)
    assert got["reduction"] == 4.0 and got["reduction_ci"] == [3.0, 5.0]
    assert got["arch"] == "L1-x" and got["delta_ppl_se"] == 0.1
    # a joint search: the lowest-EDP pick over its baseline configs; no pick stays None
    joint = {"edp_reduction": [none, row]}
    assert a.paired_on(joint, "supernet largest", "+1 %", 8.0)["reduction"] == 4.0
    assert (
        a.paired_on({"edp_reduction": [none]}, "supernet largest", "+1 %", 8.0)["reduction"] is None
    )
    assert a.paired_on(joint, "from scratch", "+1 %", 8.0) is None
    assert a.paired_on(joint, "supernet largest", "+1 %", 8.0, hw="other") is None


def test_predictor_runs_use_their_front_picks(experiment):
    """A predictor run has no paired decisions: its front's point-estimate pick per budget
    (lowest EDP over its configs) stands in, without Δppl or interval; a supernet run's
    point-estimate rows are never taken as decisions."""
    a = experiment("hw_cosearch/analyse.py")

    def point(hw, edp, arch):
        return {
            "baseline": "predictor (not measured) largest",
            "hw": hw,
            "budget": "+1 %",
            "max_ppl": 101.0,
            "arch": arch,
            "ppl": 100.9 if arch else None,
            "edp": edp,
            "reduction": 3.0 / edp if edp else None,
            "method": "search/front point estimates (not paired)",
        }

    rows = [point("a", 2.0, "L4-x"), point("b", 1.0, "L3-y"), point("c", None, None)]
    run = {"ppl_source": "predictor", "edp_reduction": rows}
    got = a.paired_on(run, "predictor (not measured) largest", "+1 %", ref_edp=4.0)
    assert got["arch"] == "L3-y" and got["pick_hw"] == "b" and got["pick_ppl"] == 100.9
    assert got["reduction"] == 4.0 and got["reduction_ci"] is None
    assert got["delta_ppl_full"] is None
    fixed = a.paired_on(run, "predictor (not measured) largest", "+1 %", 4.0, hw="a")
    assert fixed["arch"] == "L4-x" and fixed["reduction"] == 2.0
    supernet = {"ppl_source": "supernet", "edp_reduction": rows}
    assert a.paired_on(supernet, "predictor (not measured) largest", "+1 %", 4.0) is None
