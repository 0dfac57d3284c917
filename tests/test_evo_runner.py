"""The co-search job end to end with toy perplexity and cost sources: run directory,
reports, multi-hardware merge, hardware genes, resume, and errors a person can act on."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from cosearch.config import get_preset
from cosearch.errors import UserError
from cosearch.evo import InfeasibleError, SearchError, SearchOptions, run
from cosearch.evo.toys import ToyCoster, ToyEvaluator

pytest.importorskip("cosearch.hw.gemmini")

CFG = get_preset("tiny")
SPACE = CFG.space


def _run(workdir, options=None, config=CFG, **kw):
    return run(
        config,
        workdir,
        options=options or SearchOptions(),
        evaluator=ToyEvaluator(SPACE),
        coster=ToyCoster(SPACE),
        progress=False,
        **kw,
    )


def test_run_writes_a_self_describing_run_directory(tmp_path):
    out = _run(tmp_path / "r", SearchOptions(baseline_ppl=30.0))
    d = tmp_path / "r"
    for name in (
        "config.json",
        "pareto.json",
        "pareto.csv",
        "evaluated.csv",
        "hypervolume.csv",
        "metrics.jsonl",
        "summary.md",
        "ppl_vs_edp.png",
        "ppl_vs_latency.png",
        "ppl_vs_energy.png",
        "hypervolume.png",
        "state/gemmini-64k-256k.json",
        "status.json",
    ):
        assert (d / name).is_file(), name
    status = json.loads((d / "status.json").read_text())
    assert status["step"] == "done" and status["updated_utc"].endswith("Z")
    # the default screen (20,000 tokens) ran before the final scores
    assert status["final_scores"] >= 1 and status["screens_by_tokens"]["20000"] >= 1
    desc = json.loads((d / "config.json").read_text())
    assert desc["seed"] == CFG.search.seed and desc["git_commit"]
    assert desc["config"]["model"]["space"] == "tiny"
    front = json.loads((d / "pareto.json").read_text())["front"]
    assert len(front) == out["front_size"] > 0
    assert all("ppl_valid" in f and "ppl_test" in f for f in front)
    rows = list(csv.DictReader(open(d / "evaluated.csv")))
    assert len(rows) == out["n_evaluated"] >= len(front)
    assert {
        "arch_id",
        "hw",
        "ppl_search",
        "latency_ms",
        "energy_mJ",
        "edp_Js",
        "params",
        "flops",
    } <= set(rows[0])
    hv = list(csv.DictReader(open(d / "hypervolume.csv")))
    assert len(hv) == CFG.search.generations + 1
    archive = [float(r["hypervolume_archive"]) for r in hv]
    assert archive == sorted(archive) and archive[-1] > 0  # all evaluated: never decreases
    summary = (d / "summary.md").read_text()
    assert "supernet largest" in summary and "from scratch" in summary and "+0.1 ppl" in summary
    # The largest arch is on the front (lowest ppl), so every budget has a reduction >= 1.
    assert all(
        r["reduction"] >= 1.0 for r in out["edp_reduction"] if r["baseline"] == "supernet largest"
    )


def test_same_seed_identical_front_and_resume(tmp_path):
    cfg = replace(CFG, search=replace(CFG.search, population=8, generations=6, seed=7))
    a = _run(tmp_path / "a", config=cfg)
    b = _run(tmp_path / "b", config=cfg)
    assert a["front"] == b["front"]

    seen = []

    def stop(label, gen, row):
        seen.append(gen)
        if gen == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "c", config=cfg, on_generation=stop)
    with pytest.raises(SearchError, match="--resume"):
        _run(tmp_path / "c", config=cfg)
    c = _run(tmp_path / "c", SearchOptions(baseline_ppl=50.0), config=cfg, resume=True)
    assert c["front"] == a["front"]
    gens = [json.loads(x)["generation"] for x in open(tmp_path / "c" / "metrics.jsonl")]
    assert gens == list(range(7))  # no generation lost or repeated
    # times cover both sessions: the evaluations done before the interruption still count
    assert c["time"]["ppl_evals"] == a["time"]["ppl_evals"]
    before = sum(json.loads(x)["time_s"] for x in open(tmp_path / "c" / "metrics.jsonl"))
    assert c["time"]["search_s"] >= 0.9 * before
    other = replace(cfg, search=replace(cfg.search, seed=8))
    with pytest.raises(SearchError, match="differs"):
        _run(tmp_path / "c", config=other, resume=True)


def test_two_hardware_configs_merge_fronts(tmp_path):
    out = _run(tmp_path / "m", SearchOptions(hw="gemmini-64k-256k,gemmini-256k-64k"))
    hws = {f["hw"] for f in out["front"]}
    assert hws <= {"gemmini-64k-256k", "gemmini-256k-64k"} and hws
    assert set(out["hypervolume"]) == {"gemmini-64k-256k", "gemmini-256k-64k"}
    assert (tmp_path / "m" / "state" / "gemmini-256k-64k.json").is_file()
    archs = {r["arch_id"] for r in csv.DictReader(open(tmp_path / "m" / "evaluated.csv"))}
    assert out["time"]["ppl_evals"] == len(archs)  # perplexity shared across hardware
    # each config has its own front and baseline rows, even if the merged front lacks it
    saved = json.load(open(tmp_path / "m" / "pareto.json"))
    assert set(saved["fronts_by_hw"]) == {"gemmini-64k-256k", "gemmini-256k-64k"}
    assert {r["hw"] for r in out["edp_reduction"]} == set(saved["fronts_by_hw"])
    for hw, members in saved["fronts_by_hw"].items():
        assert members and all(m["hw"] == hw for m in members)


def test_hardware_genes_search(tmp_path):
    out = _run(tmp_path / "h", SearchOptions(hw="search", hw_budget_kib=160))
    from cosearch.hw.gemmini import get_hw

    assert all(get_hw(f["hw"]).total_sram_kib <= 160 for f in out["front"])
    assert set(out["hypervolume"]) == {"hw-search"}


def test_bad_input_fails_clearly(tmp_path):
    with pytest.raises(Exception, match="gemmini-64k-256k") as e:
        _run(tmp_path / "x", SearchOptions(hw="gemmini-foo"))
    assert "unknown hardware" in str(e.value)
    with pytest.raises(InfeasibleError, match="max-ppl"):
        _run(tmp_path / "y", SearchOptions(max_ppl=1.0))
    with pytest.raises(InfeasibleError, match="smallest arch"):
        _run(tmp_path / "z", SearchOptions(max_latency_ms=1e-9))
    with pytest.raises(SearchError, match="objectives"):
        _run(tmp_path / "w", SearchOptions(objectives=("edp", "latency")))
    with pytest.raises(SearchError, match="train_supernet"):
        run(CFG, tmp_path / "v", coster=ToyCoster(SPACE), progress=False)
    with pytest.raises(UserError, match="cosearch.build_lut"):
        run(
            CFG,
            tmp_path / "t",
            evaluator=ToyEvaluator(SPACE),
            progress=False,
            options=SearchOptions(backend="lut", lut_dir=str(tmp_path / "no_luts")),
        )
    other = ToyEvaluator(get_preset("cpu").space)
    with pytest.raises(SearchError, match="--preset cpu"):
        run(CFG, tmp_path / "u", evaluator=other, coster=ToyCoster(SPACE), progress=False)


def test_from_scratch_baseline_and_misuse(tmp_path):
    scratch = ToyEvaluator(SPACE)
    scratch.from_scratch = SPACE.largest()
    out = _run(tmp_path / "b", baseline_evaluator=scratch)
    rows = [r for r in out["edp_reduction"] if r["baseline"] == "from scratch"]
    assert len(rows) == 6 and all(r["reduction"] for r in rows)  # six budgets, paired
    assert all(r["method"].startswith("paired") and r["delta_ppl_se"] >= 0 for r in rows)
    summary = (tmp_path / "b" / "summary.md").read_text()
    assert "from scratch" in summary and "Layer heterogeneity" in summary
    with pytest.raises(SearchError, match="from-scratch model, not a supernet"):
        run(CFG, tmp_path / "c", evaluator=scratch, coster=ToyCoster(SPACE), progress=False)


def test_predictor_perplexities_are_labelled_in_every_file(tmp_path):
    class Predicted(ToyEvaluator):
        ppl_source = "predictor"

    run(
        CFG,
        tmp_path / "p",
        options=SearchOptions(),
        evaluator=Predicted(SPACE),
        coster=ToyCoster(SPACE),
        progress=False,
    )
    d = tmp_path / "p"
    saved = json.loads((d / "pareto.json").read_text())
    assert saved["ppl_source"] == "predictor"
    assert all("predictor" in b["name"] for b in saved["baselines"])
    assert "NOT measured" in (d / "summary.md").read_text().splitlines()[0]
    rows = list(csv.DictReader(open(d / "pareto.csv")))
    assert {r["ppl_source"] for r in rows} == {"predictor"}


def test_resume_of_a_search_saved_before_an_option_existed(tmp_path):
    """Options added after a run started take their defaults on resume; a real change of
    an option still refuses the resume."""
    from dataclasses import asdict

    from cosearch.evo import rundir

    opts = json.loads(json.dumps(asdict(SearchOptions())))
    desc = {"config": get_preset("tiny").to_dict(), "options": opts, "checkpoint": "ck"}
    old = {**desc, "options": {k: v for k, v in opts.items() if k != "scenario"}}
    (tmp_path / rundir.CONFIG_FILE).write_text(json.dumps(old))
    rundir.check(tmp_path, json.loads(json.dumps(desc)), resume=True)  # no error
    changed = json.loads(json.dumps(asdict(replace(SearchOptions(), regime="gemmini-tiler"))))
    with pytest.raises(SearchError, match="regime"):
        rundir.check(tmp_path, {**desc, "options": changed}, resume=True)


def test_hw_cosearch_analysis_of_a_predictor_study(tmp_path):
    """experiments/hw_cosearch/analyse.py on a joint search whose perplexities come from a
    predictor: it finds the largest-arch baseline under its predictor label (it looked for
    "supernet largest" and stopped) and carries the label into its table and JSON."""
    import subprocess
    import sys
    from pathlib import Path

    class Predicted(ToyEvaluator):
        ppl_source = "predictor"

    run(
        CFG,
        tmp_path / "hw" / "optimal",
        options=SearchOptions(hw="search"),
        evaluator=Predicted(SPACE),
        coster=ToyCoster(SPACE),
        progress=False,
    )
    script = Path(__file__).resolve().parents[1] / "experiments/hw_cosearch/analyse.py"
    res = subprocess.run(
        [sys.executable, str(script), "--results", str(tmp_path / "hw")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    table = (tmp_path / "hw" / "table.md").read_text()
    assert "NOT measured" in table.splitlines()[0] and "predictor (not measured) largest" in table
    summary = json.loads((tmp_path / "hw" / "summary.json").read_text())
    assert summary["ppl_source"] == "predictor"
    for m in summary["heatmaps"].values():  # every cell with an arch it can run, or blank
        assert all((c["arch"] is None) == (c["n_can_run"] == 0) for c in m["cells"].values())
