"""Supernet vs from-scratch on the cpu preset: the table and plots of experiments/supernet_cpu.

Evaluates, on the full WikiText-2 validation and test splits, the supernet's largest,
smallest and 5 random subnets (seeded) and the from-scratch largest model trained with the
same token budget; plots both runs' training loss and periodic validation perplexity.

    bash experiments/supernet_cpu/run.sh          # trains both (about 1.5 h on 2 cores), then this
    python experiments/supernet_cpu/run.py --supernet runs/supernet-cpu --scratch runs/scratch-cpu
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cosearch.space import get_space  # noqa: E402
from cosearch.stats import paired_delta, ppl_se  # noqa: E402
from cosearch.supernet.evaluate import load_evaluator  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def plot(supernet: Path, scratch: Path, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for run, label in ((supernet, "supernet (teacher = largest)"), (scratch, "from scratch")):
        recs = _records(run)
        tr = [r for r in recs if "loss_parts" in r]
        a.plot([r["step"] for r in tr], [r["loss_parts"][0] for r in tr], label=label)
        ev = [r for r in recs if "eval" in r]
        for name, style in (("largest", "-"), ("arch", "-"), ("smallest", "--")):
            pts = [(r["step"], r["eval"][name]) for r in ev if name in r["eval"]]
            if pts:
                b.plot(*zip(*pts), style, marker="o", label=f"{label}: {name}")
    a.set(
        xlabel="step (16 x 128 tokens)",
        ylabel="training NLL of the largest (nats)",
        title="training loss",
    )
    b.set(
        xlabel="step",
        ylabel="validation perplexity (first 20k tokens)",
        yscale="log",
        title="periodic validation",
    )
    a.legend()
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=120)


def copy_metrics(supernet: Path, scratch: Path, out: Path) -> None:
    """The raw learning curves: each run's metrics.jsonl (a resumed run repeats the steps
    after its checkpoint; the later line is the one that counts) and config.json."""
    for run, name in ((supernet, "supernet"), (scratch, "scratch")):
        dest = out / "metrics" / name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("metrics.jsonl", "config.json"):
            shutil.copyfile(run / f, dest / f)


def periodic_table(supernet: Path, scratch: Path) -> list[str]:
    """Validation perplexity at every periodic evaluation of both runs."""
    sup = {r["step"]: r["eval"] for r in _records(supernet) if "eval" in r}
    scr = {r["step"]: r["eval"] for r in _records(scratch) if "eval" in r}
    cfg = json.loads((supernet / "config.json").read_text())["config"]
    per_step = cfg["data"]["batch_size"] * get_space(cfg["model"]["space"]).seq_len
    lines = [
        "| step | tokens (M) | supernet largest | supernet smallest | supernet random "
        "| from scratch largest | supernet / scratch (largest) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in sorted(set(sup) | set(scr)):
        a, b = sup.get(step, {}), scr.get(step, {})
        big, ref = a.get("largest"), b.get("arch")
        cells = [a.get(k) for k in ("largest", "smallest", "random")] + [ref]
        ratio = f"{big / ref:.3f}" if big and ref else "–"
        lines.append(
            f"| {step} | {step * per_step / 1e6:.2f} | "
            + " | ".join("–" if c is None else f"{c:.1f}" for c in cells)
            + f" | {ratio} |"
        )
    return lines


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--supernet", default="runs/supernet-cpu")
    p.add_argument("--scratch", default="runs/scratch-cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-random", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument(
        "--curves-only",
        action="store_true",
        help="no full-split evaluation: the training curves and the periodic validation "
        "perplexities (first 20k tokens) of both runs, side by side (curves.md)",
    )
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.curves_only:
        plot(Path(a.supernet), Path(a.scratch), out)
        copy_metrics(Path(a.supernet), Path(a.scratch), out)
        lines = periodic_table(Path(a.supernet), Path(a.scratch))
        (out / "curves.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return {}
    t0 = time.time()
    sup = load_evaluator(a.supernet, a.data_dir)
    scr = load_evaluator(a.scratch, a.data_dir)
    space = sup.space
    rng = random.Random(a.seed)
    archs = [("largest", space.largest()), ("smallest", space.smallest())]
    archs += [(f"random{i}", space.sample(rng)) for i in range(a.n_random)]
    big = space.largest()
    ref = {s: scr.windows(big, s) for s in ("valid", "test")}  # the thesis's baseline
    rows = []
    for name, arch in [*archs, ("scratch", big)]:
        ev = scr if name == "scratch" else sup
        row = {
            "model": "from scratch largest" if name == "scratch" else f"supernet {name}",
            "arch": arch.short(),
            "params_M": space.param_count(arch) / 1e6,
        }
        for split in ("valid", "test"):
            w = ev.windows(arch, split)
            d, se = paired_delta(w, ref[split])
            row.update(
                {
                    f"{split}_ppl": w.ppl,
                    f"{split}_ppl_se": ppl_se(w),
                    f"{split}_vs_scratch": w.ppl / ref[split].ppl,
                    f"{split}_delta_vs_scratch": d,
                    f"{split}_delta_se": se,
                    f"{split}_tokens": int(w.tokens.sum()),
                }
            )
        rows.append(row)
        print({k: v for k, v in row.items() if not k.endswith("_tokens")})
    base = json.loads((ROOT / "experiments/baselines/results/baselines.json").read_text())
    sup_rows = [r for r in rows if r["model"].startswith("supernet")]
    res = {
        "command": "python experiments/supernet_cpu/run.py --supernet ... --scratch ...",
        "supernet": {
            "step": sup.step,
            "config": sup.config.to_dict(),
            "tokens": sup.step * sup.config.data.batch_size * space.seq_len,
        },
        "scratch": {
            "step": scr.step,
            "tokens": scr.step * scr.config.data.batch_size * space.seq_len,
        },
        "rows": rows,
        "ratio_largest_vs_scratch": {s: rows[0][f"{s}_vs_scratch"] for s in ("valid", "test")},
        "spread_valid": max(r["valid_ppl"] for r in sup_rows)
        / min(r["valid_ppl"] for r in sup_rows)
        - 1,
        "count_baselines": base["models"],
        "eval_seconds": time.time() - t0,
    }
    (out / "table.json").write_text(json.dumps(res, indent=2))
    lines = [
        "| model | arch | params (M) | valid ppl | test ppl | valid / scratch | "
        "valid Δ vs scratch (paired) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['model']} | `{r['arch']}` | {r['params_M']:.2f} | {r['valid_ppl']:.1f} ± "
        f"{r['valid_ppl_se']:.1f} | {r['test_ppl']:.1f} ± {r['test_ppl_se']:.1f} | "
        f"{r['valid_vs_scratch']:.3f} | {r['valid_delta_vs_scratch']:+.1f} ± "
        f"{r['valid_delta_se']:.1f} |"
        for r in rows
    ]
    lines += [
        f"| {m['model']} (count-based) | – | – | {m['valid_ppl']:.1f} | "
        f"{m['test_ppl']:.1f} | – | – |"
        for m in base["models"]
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot(Path(a.supernet), Path(a.scratch), out)
    (out / "curves.md").write_text(
        "\n".join(periodic_table(Path(a.supernet), Path(a.scratch))) + "\n"
    )
    copy_metrics(Path(a.supernet), Path(a.scratch), out)
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
