"""Check a study's budget picks with `python -m cosearch.evaluate`, independently of the search.

    python experiments/verify_picks.py RUN [RUN ...] [--checkpoint DIR]
        [--baseline-checkpoint DIR] [--data-dir DIR] [--out FILE]

A search decides each perplexity budget on whole-split (or `final_tokens`) scores that it
computes and caches itself. This re-scores every pick and both baselines with the
evaluation CLI (`cosearch.evaluate`: the same windows, its own cache beside the checkpoint)
and compares each pick's Δppl with the baseline, as the CLI gives it, against the run's
`delta_ppl_full` (paired rows of `edp_reduction` in each RUN's pareto.json). Writes
`verify_picks.json` (per row: expected, got, difference, ok) next to the first RUN unless
--out, and exits 1 if any row differs by more than `--tol` ppl (2: bad input, with one error line).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from cosearch import evaluate
from cosearch.cli import main_wrapper
from cosearch.errors import UserError
from cosearch.runinfo import git_commit, write_json_atomic


def paired_rows(run: Path) -> list[dict]:
    """The paired budget rows with a pick of RUN's pareto.json."""
    path = run / "pareto.json"
    if not path.is_file():
        raise UserError(f"{path} not found; pass run directories of `cosearch.search`")
    d = json.loads(path.read_text())
    return [
        {**r, "run": str(run)}
        for r in d.get("edp_reduction", [])
        if str(r.get("method", "")).startswith("paired") and r.get("arch")
    ]


def _scores(checkpoint: str, archs: list[str], tokens, data_dir) -> dict[str, float]:
    argv = ["--checkpoint", checkpoint, "--archs", ",".join(archs), "--split", "valid"]
    argv += ["--json"] + (["--max-tokens", str(tokens)] if tokens not in (None, "all") else [])
    argv += ["--data-dir", data_dir] if data_dir else []
    with contextlib.redirect_stdout(io.StringIO()):  # the CLI's own JSON print
        rows = evaluate.main(argv)
    return {r["short"]: r["ppl"] for r in rows}


def verify(
    runs: list[Path],
    checkpoint: str,
    baseline_checkpoint: str | None,
    data_dir: str | None = None,
    tol: float = 1e-3,
) -> dict:
    rows = [r for run in runs for r in paired_rows(run)]
    if not rows:
        raise UserError(
            f"no paired budget rows with a pick in {', '.join(map(str, runs))}; "
            "pass runs of `cosearch.search` made with the final re-evaluation on"
        )
    out = []
    for tokens in sorted({str(r["final_tokens"]) for r in rows}):
        sel = [r for r in rows if str(r["final_tokens"]) == tokens]
        picks = sorted({r["arch"] for r in sel})
        got = _scores(checkpoint, ["largest", *picks], tokens, data_dir)
        base = {"supernet largest": next(iter(got.values()))}
        if any(r["baseline"] == "from scratch" for r in sel):
            if baseline_checkpoint is None:
                raise UserError("from-scratch rows need --baseline-checkpoint DIR")
            base["from scratch"] = next(
                iter(_scores(baseline_checkpoint, ["largest"], tokens, data_dir).values())
            )
        for r in sel:
            b = base.get(r["baseline"])
            delta = None if b is None else got[r["arch"]] - b
            diff = None if delta is None else abs(delta - r["delta_ppl_full"])
            out.append(
                {
                    "run": r["run"],
                    "hw": r["hw"],
                    "baseline": r["baseline"],
                    "budget": r["budget"],
                    "arch": r["arch"],
                    "final_tokens": r["final_tokens"],
                    "expected_delta_ppl": r["delta_ppl_full"],
                    "cli_delta_ppl": delta,
                    "cli_pick_ppl": got[r["arch"]],
                    "cli_baseline_ppl": b,
                    "difference": diff,
                    "ok": diff is not None and diff <= tol,
                }
            )
    return {
        "command": "python experiments/verify_picks.py " + " ".join(map(str, runs)),
        "checkpoint": checkpoint,
        "baseline_checkpoint": baseline_checkpoint,
        "tolerance_ppl": tol,
        "rows": out,
        "all_ok": all(r["ok"] for r in out),
        "git_commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories with pareto.json")
    p.add_argument(
        "--checkpoint",
        default="checkpoints/supernet-cpu",
        help="the supernet the runs searched (default: %(default)s)",
    )
    p.add_argument(
        "--baseline-checkpoint",
        default="checkpoints/scratch-cpu",
        help="the from-scratch baseline (default: %(default)s)",
    )
    p.add_argument("--data-dir", default=None, help="WikiText-2 (default: $COSEARCH_DATA)")
    p.add_argument(
        "--tol",
        type=float,
        default=1e-3,
        help="allowed |Δ difference| in ppl (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, help="default: RUNS[0]/../verify_picks.json")
    a = p.parse_args(argv)
    res = verify(a.runs, a.checkpoint, a.baseline_checkpoint, a.data_dir, a.tol)
    out = a.out or a.runs[0].parent / "verify_picks.json"
    write_json_atomic(out, res)
    bad = [r for r in res["rows"] if not r["ok"]]
    print(f"{len(res['rows']) - len(bad)} of {len(res['rows'])} picks agree with the CLI -> {out}")
    for r in bad:
        print(
            f"  DIFFERS: {r['run']} {r['hw']} {r['baseline']} {r['budget']} {r['arch']}: "
            f"{r['expected_delta_ppl']} vs {r['cli_delta_ppl']}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_wrapper(main))  # a bad checkpoint or data directory: one line, exit 2
