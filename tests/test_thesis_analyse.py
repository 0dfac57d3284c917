"""experiments/thesis_cpu/analyse.py on two tiny searches: the per-(hw, baseline, budget)
entries of summary.json that the README's numbers come from, and the plots."""

from __future__ import annotations

import json

import cosearch.evo.runner as runner
from cosearch.evo.budgets import BUDGETS
from cosearch.evo.toys import ToyCoster
from cosearch.search import main as search

ENTRY_KEYS = {
    "reduction",
    "reduction_ci",
    "arch",
    "budget_ppl",
    "delta_ppl_full",
    "delta_ppl_se",
    "baseline",
    "hw",
    "budget",
}


def test_two_seeds_make_one_entry_per_hw_baseline_and_budget(
    experiment, tiny_checkpoint, tiny_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(runner, "make_coster", lambda config, opts: ToyCoster(config.space))
    results = tmp_path / "results"
    for seed in (0, 1):
        argv = [
            "--checkpoint",
            str(tiny_checkpoint),
            "--baseline-checkpoint",
            str(tiny_checkpoint),
            "--data-dir",
            str(tiny_data),
            "--hw",
            "gemmini-64k-256k,gemmini-256k-64k",
            "--seed",
            str(seed),
            "--population",
            "8",
            "--generations",
            "1",
            "--budget-tokens",
            "0",
            "--budget-max-evals",
            "0",
            "--ppl-cache",
            str(results / "ppl-cache"),
            "--quiet",
            "--out",
            str(results / f"seed{seed}"),
        ]
        assert search(argv) == 0, capsys.readouterr().err
    experiment("thesis_cpu/analyse.py").main([str(results)])
    summary = json.loads((results / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    entries = summary["entries"]
    keys = {(e["hw"], e["baseline"], e["budget"]) for e in entries}
    assert len(keys) == len(entries) == 2 * 2 * len(BUDGETS)
    for e in entries:
        assert ENTRY_KEYS <= set(e)
        assert e["n_seeds"] == 2 and e["budget_ppl"] > 0
        if e["reduction"] is not None:  # a pick within its allowance, with an interval
            assert e["delta_ppl_full"] <= e["budget_ppl"] + 1e-9 and e["delta_ppl_se"] >= 0
            lo, hi = e["reduction_ci"]
            assert lo <= hi and e["arch"]
    # the baseline itself is always within +0.1 ppl of itself: a pick with Δ = 0 somewhere
    own = [e for e in entries if e["baseline"] == "supernet largest" and e["budget"] == "+0.1 ppl"]
    assert own and all(e["reduction"] is not None and e["reduction"] >= 1.0 for e in own)
    for name in ("table.md", "fronts.png", "reduction_vs_budget.png"):
        assert (results / name).stat().st_size > 0
    assert "Seeds: [0, 1]" in (results / "table.md").read_text()
