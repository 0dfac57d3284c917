"""experiments/verify_picks.py: a study's budget picks re-scored with `cosearch.evaluate`."""

from __future__ import annotations

import json

import pytest

from cosearch.errors import UserError


@pytest.fixture(scope="module")
def mod(experiment):
    return experiment("verify_picks.py")


def test_picks_agree_with_the_cli_and_a_wrong_one_is_flagged(mod, tiny_checkpoint, tmp_path):
    from cosearch.supernet.evaluate import load_evaluator

    ev = load_evaluator(tiny_checkpoint, cache_dir=tmp_path / "search-cache")
    sp = ev.space
    pick = sp.smallest()
    delta = ev.perplexity(pick) - ev.perplexity(sp.largest())
    row = {
        "method": "paired, re-evaluated on the final split",
        "baseline": "supernet largest",
        "hw": "gemmini-64k-256k",
        "arch": pick.short(),
        "final_tokens": "all",
    }
    rows = [
        {**row, "budget": "+1 %", "delta_ppl_full": delta},
        {**row, "budget": "+5 %", "delta_ppl_full": delta + 1.0},  # not what was scored
        {**row, "budget": "+0.1 %", "arch": None, "delta_ppl_full": None},  # no pick
    ]
    run = tmp_path / "seed0"
    run.mkdir()
    (run / "pareto.json").write_text(json.dumps({"edp_reduction": rows}))
    res = mod.verify([run], str(tiny_checkpoint), None)
    assert [(r["budget"], r["ok"]) for r in res["rows"]] == [("+1 %", True), ("+5 %", False)]
    assert res["rows"][0]["difference"] < 1e-6 and not res["all_ok"]
    assert mod.main([str(run), "--checkpoint", str(tiny_checkpoint)]) == 1
    assert json.loads((tmp_path / "verify_picks.json").read_text())["rows"][1]["ok"] is False
    with pytest.raises(UserError, match="--baseline-checkpoint"):
        (run / "pareto.json").write_text(
            json.dumps({"edp_reduction": [{**rows[0], "baseline": "from scratch"}]})
        )
        mod.verify([run], str(tiny_checkpoint), None)
    # bad input is exit code 2 with one line, not 1 (which means "a pick differs")
    assert mod.main_wrapper(mod.main, [str(tmp_path / "nowhere")]) == 2
