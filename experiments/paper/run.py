"""paper: the thesis-scale search space on CPU, with a perplexity PREDICTOR (see report.md).

    python experiments/paper/run.py            # about a minute; resumes interrupted searches

(A search already landed in --out, without its state/, is not run again: pass --out a new
folder to redo the study, e.g. with another --train-from, and land it with
experiments/land_results.py --history.)

No GPU was lent, and a paper-scale supernet would take days to train here, so this study
does NOT measure paper-scale perplexity. It runs the real co-search machinery on the `paper`
space and its Gemmini LUTs (lut/paper/), with perplexity replaced by a predictor:

    log(ppl / ppl_largest) = w · (features(arch) - features(largest))

fitted by least squares on the cpu supernet's measured search perplexities (by default the
three thesis_cpu seeds on the current supernet, experiments/thesis_cpu/results/seed*/
evaluated.csv; --train-from takes others, e.g. the serving searches). Features are each
dimension's relative position in its own space (layers, width, mean heads, mean FFN width,
in [0, 1]) and log of the non-embedding parameter fraction of the space's largest arch, so a
paper arch is scored as the cpu arch at the same relative position. Perplexities are
reported as an index, the largest arch = 100, so "+1 ppl" reads as "+1 %". Held-out fit
quality (R², Spearman) on cpu archs is written to results/predictor.json.

Searches (seed 0, 40 x 40, the paper preset's settings): the two thesis configs
(results/fixed), and the joint buffer search under 320 KiB in both mapping regimes
(results/hw/<regime>), compared and mapped by experiments/hw_cosearch/analyse.py
(results/hw/table.md, heatmap.png).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from cosearch.config import get_preset
from cosearch.evo.pareto import read_search_ppl
from cosearch.evo.runner import SearchOptions, run
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic
from cosearch.space import PRESETS, Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[2]
INDEX = 100.0  # the largest arch's perplexity index
SEARCHES = {  # results subdirectory -> search
    "fixed": SearchOptions(hw="gemmini-64k-256k,gemmini-256k-64k", final_eval=False),
    "hw/optimal": SearchOptions(hw="search", hw_budget_kib=320, final_eval=False),
    "hw/gemmini-tiler": SearchOptions(
        hw="search", hw_budget_kib=320, regime="gemmini-tiler", final_eval=False
    ),
}


def _pos(value: float, choices: tuple[int, ...]) -> float:
    return (value - choices[0]) / (choices[-1] - choices[0])


def features(space: SearchSpace, arch: Arch) -> np.ndarray:
    frac = space.param_count(arch, embeddings=False) / space.param_count(
        space.largest(), embeddings=False
    )
    return np.array(
        [
            _pos(arch.n_layers, space.layers),
            _pos(arch.d_model, space.d_model),
            float(np.mean([_pos(h, space.heads) for h in arch.heads])),
            float(np.mean([_pos(f, space.d_ffn) for f in arch.d_ffn])),
            math.log(frac),
        ]
    )


def _read_pool(pattern: str) -> dict[Arch, float]:
    pool: dict[Arch, float] = {}
    for path in sorted(glob.glob(pattern)):
        # a pair the search did not score (e.g. infeasible on its hardware) has no perplexity
        pool.update({a: p for a, p in read_search_ppl(path).items() if math.isfinite(p)})
    return pool


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class Predictor:
    """Perplexity index of an arch of `space`, from the cpu-fitted weights."""

    from_scratch = None
    ppl_source = "predictor"  # labels every file the search writes (cosearch.evo.report)

    def __init__(self, space: SearchSpace, w: np.ndarray) -> None:
        self.space, self.w = space, w
        self.ref = features(space, space.largest())

    def perplexity(self, arch: Arch, split: str = "valid", max_tokens: int | None = None) -> float:
        return INDEX * math.exp(float(self.w @ (features(self.space, arch) - self.ref)))


def fit(pool: dict[Arch, float], seed: int = 0) -> tuple[np.ndarray, dict]:
    cpu = PRESETS["cpu"]
    archs = list(pool)
    ref = features(cpu, cpu.largest())
    X = np.array([features(cpu, a) - ref for a in archs])
    y = np.log(np.array([pool[a] for a in archs]) / pool[cpu.largest()])
    idx = list(range(len(archs)))
    random.Random(seed).shuffle(idx)
    cut = int(0.8 * len(idx))
    tr, te = np.array(idx[:cut]), np.array(idx[cut:])
    w, *_ = np.linalg.lstsq(X[tr], y[tr], rcond=None)
    pred = X[te] @ w
    r2 = 1 - float(np.sum((y[te] - pred) ** 2) / np.sum((y[te] - y[te].mean()) ** 2))
    w_all, *_ = np.linalg.lstsq(X, y, rcond=None)
    quality = {
        "n_archs": len(archs),
        "n_train": len(tr),
        "n_heldout": len(te),
        "heldout_r2_log_ppl": r2,
        "heldout_spearman": _spearman(pred, y[te]),
        "heldout_mape_ppl_pct": float(np.mean(np.abs(np.exp(pred - y[te]) - 1)) * 100),
        "features": [
            "layers_pos",
            "d_model_pos",
            "mean_heads_pos",
            "mean_ffn_pos",
            "log_param_frac",
        ],
        "weights_all_data": w_all.tolist(),
        "cpu_largest_search_ppl": pool[cpu.largest()],
        "cpu_ppl_spread_pct": float((np.exp(y.max()) - 1) * 100),
    }
    return w_all, quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--train-from",
        default="experiments/thesis_cpu/results/seed*/evaluated.csv",
        help="glob of search outputs (evaluated.csv) of the cpu supernet to fit on",
    )
    ap.add_argument("--out", type=Path, default=Path("experiments/paper/results"))
    ap.add_argument("--seed", type=int, default=0, help="search seed")
    args = ap.parse_args()
    pool = _read_pool(
        str(ROOT / args.train_from) if not Path(args.train_from).is_absolute() else args.train_from
    )
    if PRESETS["cpu"].largest() not in pool:
        raise SystemExit(
            f"no cpu measurements with the largest arch under {args.train_from}; "
            "pass --train-from with the evaluated.csv of searches of the current cpu supernet"
        )
    w, quality = fit(pool)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "predictor.json", {**quality, "git_commit": git_commit()})
    print(json.dumps(quality, indent=1))

    config = get_preset("paper")
    config = replace(config, search=replace(config.search, seed=args.seed))
    evaluator = Predictor(config.space, w)
    results = {}
    for name, opts in SEARCHES.items():
        workdir = args.out / name
        results[name] = run(
            config,
            workdir,
            options=opts,
            evaluator=evaluator,
            resume=(workdir / "state").is_dir(),
            progress=True,
        )
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments/hw_cosearch/analyse.py"),
            "--results",
            str(args.out / "hw"),
            "--fixed",
            str(args.out / "fixed"),
        ],
        check=True,
    )
    lines = [
        "# paper: co-search on the paper space with a PREDICTED perplexity index",
        "",
        "Perplexity is an index (largest arch = 100) from a predictor fitted on the cpu "
        "supernet, not a measurement; '+1 ppl' = +1 %. Costs: lut/paper (analytical Gemmini "
        f"model calibrated on Timeloop). Commit {git_commit()}.",
        "",
        f"Predictor held-out on cpu archs: R² {quality['heldout_r2_log_ppl']:.3f} (log ppl), "
        f"Spearman {quality['heldout_spearman']:.3f}, MAPE {quality['heldout_mape_ppl_pct']:.2f} %"
        f" over {quality['n_heldout']} archs.",
        "",
        "## Fixed thesis configs (each config's own front vs its largest arch)",
        "",
        "| hw | budget (index points = %) | best arch | index | EDP reduction |",
        "|---|---|---|---|---|",
    ]
    for row in results["fixed"]["edp_reduction"]:
        if row["budget"].endswith("ppl"):  # with an index of 100, +x ppl is +x %
            continue
        red = f"{row['reduction']:.2f}×" if row["reduction"] else "none within budget"
        ppl = f"{row['ppl']:.2f}" if row["ppl"] else "–"
        lines.append(f"| {row['hw']} | {row['budget']} | {row['arch'] or '–'} | {ppl} | {red} |")
    lines += ["", "Joint buffer search: see hw/table.md and hw/heatmap.png.", ""]
    for name, r in results.items():
        lines.append(
            f"- {name}: front of {r['front_size']} pairs from {r['n_evaluated']} "
            f"evaluated, search {r['time']['search_s']:.0f} s"
        )
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
