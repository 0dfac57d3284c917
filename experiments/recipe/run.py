"""Training-recipe ablation: what makes the cpu model learn per token.

Trains the `cpu` preset's largest arch from scratch (the same loop the supernet uses, one
subnet per step) under each recipe variant at one fixed token budget, plus the plain-JAX
minimal LM of `minimal_lm.py` on the same batches, and scores each on the whole WikiText-2
validation split. Resumable: finished variants are kept in results/ablation.json and skipped.

    python experiments/recipe/run.py                   # all variants, ~5-10 min each on 2 cores
    python experiments/recipe/run.py --only new,first  # a subset
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cosearch.config import get_preset, override  # noqa: E402
from cosearch.data import load_corpus  # noqa: E402
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic  # noqa: E402
from cosearch.supernet.evaluate import load_evaluator  # noqa: E402
from cosearch.supernet.train import run as train_run  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import minimal_lm  # noqa: E402

FIRST = [  # the recipe of the committed 400-step checkpoints (sessions 1-2)
    "model.tied=true",
    "model.output_bias=zero",
    "train.schedule=cosine",
    "train.lr=1e-3",
    "train.b2=0.999",
    "model.dropout=0.1",
    "train.warmup_steps=40",
]
# name -> (what it changes, overrides on top of today's cpu preset)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "first": (
        "first recipe: tied output, zero biases, cosine, lr 1e-3, b2 0.999, dropout 0.1",
        FIRST,
    ),
    "first+output": (
        "first recipe with separate zero-init output tables + log-unigram biases",
        [*FIRST, "model.tied=false", "model.output_bias=unigram"],
    ),
    "first+output+optim": (
        "... and lr 3e-3, b2 0.95, dropout 0, warmup 100 (cosine)",
        ["train.schedule=cosine"],
    ),
    "new": ("new recipe (cpu default): + warmup-stable-decay schedule", []),
    "new-tied": (
        "new recipe, output tied to the input tables (log-unigram biases)",
        ["model.tied=true"],
    ),
    "new-zero-bias": (
        "new recipe, output biases zero instead of log-unigram",
        ["model.output_bias=zero"],
    ),
    "new-dropout0.1": ("new recipe, dropout 0.1", ["model.dropout=0.1"]),
    "new-lr1e-3": ("new recipe, lr 1e-3", ["train.lr=1e-3"]),
    "new-lr6e-3": ("new recipe, lr 6e-3", ["train.lr=6e-3"]),
    "new-full-softmax": ("new recipe, full softmax instead of adaptive", ["model.output=full"]),
    "new-batch32": (
        "new recipe, batch 32 x 128 for half the steps (same tokens)",
        ["data.batch_size=32", "train.warmup_steps=50"],
    ),
}


def _train_variant(name: str, sets: list[str], steps: int, runs: Path, data_dir) -> dict:
    cfg = get_preset("cpu")
    steps_here = steps // 2 if "data.batch_size=32" in sets else steps
    cfg = override(
        cfg,
        [
            *sets,
            f"train.steps={steps_here}",
            "train.eval_every=100",
            "train.ckpt_every=100",
            "train.log_every=50",
        ]
        + ([f"data.data_dir={data_dir}"] if data_dir else []),
    )
    workdir = runs / name
    t0 = time.perf_counter()
    train_run(
        cfg, workdir, resume=(workdir / "config.json").exists(), from_scratch=cfg.space.largest()
    )
    train_s = time.perf_counter() - t0
    ev = load_evaluator(workdir, data_dir)
    ppl = ev.perplexity(cfg.space.largest(), "valid")
    recs = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x]
    curve = [{"step": r["step"], "ppl_20k": r["eval"]["arch"]} for r in recs if "eval" in r]
    return {
        "valid_ppl": ppl,
        "steps": steps_here,
        "tokens": steps * 16 * 128,
        "train_seconds": round(train_s, 1),
        "overrides": sets,
        "curve": curve,
    }


def _train_minimal(steps: int, data_dir) -> dict:
    corpus = load_corpus(data_dir)
    t0 = time.perf_counter()
    params, curve = minimal_lm.train(corpus, steps=steps)
    train_s = time.perf_counter() - t0
    ppl = minimal_lm.evaluate(params, corpus.valid, 4, 16, 128)
    return {
        "valid_ppl": ppl,
        "steps": steps,
        "tokens": steps * 16 * 128,
        "train_seconds": round(train_s, 1),
        "overrides": [],
        "curve": [{"step": r["step"], "ppl_20k": r["eval"]["arch"]} for r in curve],
    }


def initial_loss(sets: list[str], data_dir) -> float:
    """Mean NLL (nats) of the untrained largest arch on the first 2,048 validation tokens."""
    from cosearch.supernet.evaluate import split_windows
    from cosearch.supernet.train import init_state, make_model

    cfg = override(get_preset("cpu"), sets)
    corpus = load_corpus(data_dir)
    model = make_model(cfg, corpus.vocab_size)
    state = init_state(cfg, model, corpus.train)
    w = split_windows(model, state.params, cfg.space, cfg.space.largest(), corpus.valid, 16, 2048)
    return float(w.nll.sum() / w.tokens.sum())


def report(results: dict, out: Path) -> None:
    rows = results["variants"]
    lines = [
        f"Full WikiText-2 validation perplexity ({rows and next(iter(rows.values()))['tokens']:,} "
        "training tokens each, the cpu largest arch from scratch):",
        "",
        "| variant | what | valid ppl | train s |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['what']} | {r['valid_ppl']:.1f} | {r['train_seconds']:.0f} |")
    if "initial_loss" in results:
        il = results["initial_loss"]
        lines += [
            "",
            f"Untrained model's loss on the first 2,048 validation tokens: first recipe "
            f"{il['first']:.2f} nats, new recipe {il['new']:.2f} nats (uniform guess "
            f"{il['uniform']:.2f}).",
        ]
    write_text_atomic(out / "ablation.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in rows.items():
        pts = [
            (c["step"] * (2 if r["steps"] < results["steps"] else 1), c["ppl_20k"])
            for c in r["curve"]
        ]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{name} ({r['valid_ppl']:.0f})")
    ax.set(
        xlabel="training tokens / 2048",
        ylabel="valid ppl, first 20k tokens",
        yscale="log",
        title="recipe ablation (legend: full-split valid ppl)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ablation.png", dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=300, help="steps of 16 x 128 tokens per run")
    p.add_argument("--only", default="", help="comma-separated variants (and/or 'minimal')")
    p.add_argument("--runs", default="runs/recipe", help="where the training runs go")
    p.add_argument("--data-dir", default=None, help="WikiText-2 directory ($COSEARCH_DATA)")
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    path = out / "ablation.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if results.get("steps") not in (None, args.steps):
        sys.exit(
            f"error: {path} holds a {results['steps']}-step ablation; pass --steps "
            f"{results['steps']} or another --out"
        )
    results.update(
        steps=args.steps,
        command="python experiments/recipe/run.py",
        what="cpu largest arch from scratch, full-split valid ppl per recipe variant",
    )
    results.setdefault("variants", {})
    wanted = [*VARIANTS, "minimal"]
    if args.only:
        wanted = [w for w in args.only.split(",") if w]
        unknown = [w for w in wanted if w not in VARIANTS and w != "minimal"]
        if unknown:
            sys.exit(f"error: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}, minimal")
    if "initial_loss" not in results:
        results["initial_loss"] = {
            "first": initial_loss(FIRST, args.data_dir),
            "new": initial_loss([], args.data_dir),
            "uniform": math.log(load_corpus(args.data_dir).vocab_size),
        }
        write_json_atomic(path, results)
    for name in wanted:
        if name in results["variants"]:
            continue
        print(f"== {name}", flush=True)
        if name == "minimal":
            r = _train_minimal(args.steps, args.data_dir)
            r["what"] = "plain JAX + optax dense LM (minimal_lm.py), full softmax, new recipe"
        else:
            what, sets = VARIANTS[name]
            r = _train_variant(name, sets, args.steps, runs / f"s{args.steps}", args.data_dir)
            r["what"] = what
        r["git_commit"] = git_commit()
        results["variants"][name] = r
        write_json_atomic(path, results)
        print(f"{name}: valid ppl {r['valid_ppl']:.1f} ({r['train_seconds']:.0f} s)", flush=True)
    report(results, out)


if __name__ == "__main__":
    main()
