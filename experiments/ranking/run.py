"""Ranking fidelity: does the supernet order subnets as standalone training does?

Picks archs spread over the space (largest, smallest, and six cells of depth x width, see
`select_archs`), trains each from
scratch with the supernet's own recipe and token budget (`train_supernet --from-scratch`),
scores the standalone models and the supernet's inherited weights on the whole validation
split, and compares the two rankings (Kendall tau and Spearman, with bootstrap intervals
over archs) and, on the same archs, two training-free proxies: decoder parameter count
(LiteTransformerSearch) and FLOPs. Resumable: trained runs and scores are reused.

    python experiments/ranking/run.py --supernet runs/supernet-cpu     # ~2.5 h on 2 cores
    python experiments/ranking/run.py --select-only                    # just list the archs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import matplotlib
import numpy as np
from scipy import stats as sps

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cosearch.config import RunConfig  # noqa: E402
from cosearch.runinfo import git_commit, write_json_atomic, write_text_atomic  # noqa: E402
from cosearch.space import Arch, SearchSpace  # noqa: E402

HERE = Path(__file__).parent


def select_archs(space: SearchSpace, seed: int = 0) -> dict[str, Arch]:
    """largest, smallest, then one arch per (depth, width) cell: the fewest, middle and
    most layers of the space x a narrow (second-smallest) and the widest d_model; inside
    a cell (heads and FFN widths free) the sampled arch nearest the cell's median decoder
    parameter count. Parameter counts then spread from the smallest to the largest, and
    deep-narrow archs meet shallow-wide ones of similar size."""
    rng = random.Random(f"{seed}:ranking")
    pool = sorted({space.sample(rng) for _ in range(5000)}, key=lambda a: a.to_json())
    layers = sorted({a.n_layers for a in pool})
    widths = sorted({a.d_model for a in pool})
    chosen = {"largest": space.largest(), "smallest": space.smallest()}
    for n in (layers[0], layers[len(layers) // 2], layers[-1]):
        for tag, d in (("narrow", widths[1]), ("wide", widths[-1])):
            cell = [a for a in pool if a.n_layers == n and a.d_model == d]
            if not cell:
                continue
            params = [space.param_count(a, embeddings=False) for a in cell]
            median = float(np.median(params))
            best = min(zip(params, cell), key=lambda pc: (abs(pc[0] - median), pc[1].to_json()))
            chosen[f"L{n}-{tag}"] = best[1]
    return chosen


def standalone(name, arch, config, runs: Path, out: Path, split, data_dir, train_run):
    """The standalone run's per-window NLLs on `split`: from `out/standalone/NAME.json`
    when it holds this arch at this training length (so the run's checkpoints need not be
    kept), else trained (or resumed) in `runs/NAME` and scored, and saved there."""
    from cosearch.stats import Windows, ppl_se
    from cosearch.supernet.evaluate import load_evaluator

    path = out / "standalone" / f"{name}.json"
    if path.exists():
        d = json.loads(path.read_text())
        if (
            d["arch"] == arch.to_dict()
            and d["train_steps"] == config.train.steps
            and d["split"] == split
        ):
            return Windows(np.array(d["window_nll"]), np.array(d["window_tokens"]))
    workdir = runs / name
    done = (workdir / "config.json").exists()
    print(f"== {name}: standalone training ({'resume' if done else 'new'})", flush=True)
    train_run(config, workdir, resume=done, from_scratch=arch)
    ev = load_evaluator(workdir, data_dir)
    w = ev.windows(arch, split)
    metrics = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    steps = {m["step"]: m for m in metrics if "tokens_per_s" in m}  # resumes repeat steps
    per_step = config.data.batch_size * config.space.seq_len
    log_every = config.train.log_every
    train_s = sum(log_every * per_step / m["tokens_per_s"] for m in steps.values())
    write_json_atomic(
        path,
        {
            "name": name,
            "arch": arch.to_dict(),
            "short": arch.short(),
            "split": split,
            "train_steps": config.train.steps,
            "train_tokens": config.train.steps * per_step,
            "train_seconds_est": train_s,
            "train_time_note": "sum over logged intervals of tokens / tokens_per_s (excludes "
            "compile and evaluation)",
            "ppl": w.ppl,
            "ppl_se": ppl_se(w),
            "tokens": int(w.tokens.sum()),
            "window_nll": w.nll.tolist(),
            "window_tokens": w.tokens.tolist(),
            "git_commit": git_commit(),
        },
    )
    return w


def rank_stats(x: np.ndarray, y: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Kendall tau and Spearman rho of x vs y with percentile bootstrap intervals over
    the archs (resamples with fewer than 3 distinct archs are skipped)."""
    tau = float(sps.kendalltau(x, y).statistic)
    rho = float(sps.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(x), len(x))
        if len(set(i)) < 3:
            continue
        taus.append(sps.kendalltau(x[i], y[i]).statistic)
        rhos.append(sps.spearmanr(x[i], y[i]).statistic)
    ci = lambda v: [float(q) for q in np.nanquantile(v, [0.025, 0.975])]  # noqa: E731
    return {
        "kendall_tau": tau,
        "kendall_tau_ci": ci(taus),
        "spearman": rho,
        "spearman_ci": ci(rhos),
    }


def token_noise(alone: list, inherited: list, n_boot: int = 1000, seed: int = 0) -> dict:
    """What the evaluation tokens' noise does to the ranking: every model is scored on the
    same windows, so resampling the windows jointly (bootstrap) re-scores all of them at
    once; Kendall tau and Spearman of supernet vs standalone get an interval over token
    resampling (the archs fixed). And per pair of archs: the standalone and the supernet
    perplexity differences with their paired SE over windows, whether the standalone
    difference is resolved (|delta| > 2 SE) and whether the two orders agree. Training-seed
    noise (each standalone model is one training run) is not in these intervals."""
    from cosearch.stats import bootstrap_ppl, bootstrap_weights, paired_delta

    w = bootstrap_weights(len(alone[0].tokens), n_boot, seed)
    a = np.stack([bootstrap_ppl(w, x) for x in alone], 1)  # (n_boot, archs)
    s = np.stack([bootstrap_ppl(w, x) for x in inherited], 1)
    taus = [sps.kendalltau(s[b], a[b]).statistic for b in range(n_boot)]
    rhos = [sps.spearmanr(s[b], a[b]).statistic for b in range(n_boot)]
    pairs = []
    for i in range(len(alone)):
        for j in range(i + 1, len(alone)):
            da, sea = paired_delta(alone[i], alone[j])
            ds, ses = paired_delta(inherited[i], inherited[j])
            pairs.append(
                {
                    "i": i,
                    "j": j,
                    "standalone_delta": da,
                    "standalone_delta_se": sea,
                    "supernet_delta": ds,
                    "supernet_delta_se": ses,
                    "standalone_resolved": bool(abs(da) > 2 * sea),
                    "agree": bool(np.sign(da) == np.sign(ds)),
                }
            )
    resolved = [q for q in pairs if q["standalone_resolved"]]
    ci = lambda v: [float(q) for q in np.nanquantile(v, [0.025, 0.975])]  # noqa: E731
    return {
        "kendall_tau_ci_tokens": ci(taus),
        "spearman_ci_tokens": ci(rhos),
        "pairs": len(pairs),
        "pairs_resolved": len(resolved),
        "pairs_resolved_agree": sum(q["agree"] for q in resolved),
        "pairs_agree": sum(q["agree"] for q in pairs),
        "pair_rows": pairs,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--supernet", default="runs/supernet-cpu", help="supernet run directory")
    p.add_argument("--runs", default="runs/ranking", help="where standalone runs go")
    p.add_argument("--data-dir", default=None, help="WikiText-2 directory ($COSEARCH_DATA)")
    p.add_argument("--split", default="valid", choices=("valid", "test"))
    p.add_argument("--select-only", action="store_true", help="print the archs and stop")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument(
        "--only",
        help="comma list of names: train (or resume) and score just these standalone runs, "
        "saving their scores, and stop (no supernet needed yet)",
    )
    a = p.parse_args(argv)
    sup_dir = Path(a.supernet)
    desc = json.loads((sup_dir / "config.json").read_text())
    config = RunConfig.from_dict(desc["config"])
    space = config.space
    archs = select_archs(space)
    for name, arch in archs.items():
        print(
            f"{name:12s} {arch.short():45s} decoder params "
            f"{space.param_count(arch, embeddings=False) / 1e6:.2f} M"
        )
    if a.select_only:
        return {}

    from cosearch.stats import ppl_se
    from cosearch.supernet.evaluate import load_evaluator
    from cosearch.supernet.train import run as train_run

    sup = None if a.only else load_evaluator(sup_dir, a.data_dir)
    if sup is not None and sup.from_scratch is not None:
        sys.exit(f"error: {sup_dir} is a from-scratch run; --supernet needs a supernet run")
    if config.data.data_dir != (a.data_dir or config.data.data_dir):
        from dataclasses import replace

        config = replace(config, data=replace(config.data, data_dir=a.data_dir))
    out = Path(a.out)
    only = set(a.only.split(",")) if a.only else None
    if only and not only <= set(archs):
        sys.exit(f"error: --only names {sorted(only - set(archs))} not among {list(archs)}")
    rows, alone_w, inherited_w = [], [], []
    for name, arch in archs.items():
        if only and name not in only:
            continue
        alone = standalone(name, arch, config, Path(a.runs), out, a.split, a.data_dir, train_run)
        if only:
            print(f"{name}: standalone {alone.ppl:.1f}", flush=True)
            continue
        inherited = sup.windows(arch, a.split)
        alone_w.append(alone)
        inherited_w.append(inherited)
        rows.append(
            {
                "name": name,
                "arch": arch.to_dict(),
                "short": arch.short(),
                "decoder_params": space.param_count(arch, embeddings=False),
                "flops": space.flops(arch),
                "standalone_ppl": alone.ppl,
                "standalone_ppl_se": ppl_se(alone),
                "supernet_ppl": inherited.ppl,
                "supernet_ppl_se": ppl_se(inherited),
            }
        )
        print(f"{name}: standalone {alone.ppl:.1f}, supernet {inherited.ppl:.1f}", flush=True)
    if only:
        return {}
    alone = np.array([r["standalone_ppl"] for r in rows])
    res = {
        "what": "rank agreement of supernet-inherited vs standalone-trained perplexity "
        f"(whole {a.split} split), and of training-free proxies vs standalone",
        "command": "python experiments/ranking/run.py",
        "git_commit": git_commit(),
        "supernet": sup_dir.name,  # the run directory's name (no machine paths in results)
        "supernet_step": sup.step,
        "train_steps": config.train.steps,
        "train_tokens": config.train.steps * config.data.batch_size * space.seq_len,
        "n_standalone": len(rows),
        **rank_stats(np.array([r["supernet_ppl"] for r in rows]), alone),
    }
    # a bigger proxy means a better (lower-perplexity) model: rank -proxy against ppl
    for proxy, key in (("params", "decoder_params"), ("flops", "flops")):
        st = rank_stats(-np.array([r[key] for r in rows], float), alone)
        res[f"proxy_{proxy}_kendall_tau"] = st["kendall_tau"]
        res[f"proxy_{proxy}_kendall_tau_ci"] = st["kendall_tau_ci"]
        res[f"proxy_{proxy}_spearman"] = st["spearman"]
    noise = token_noise(alone_w, inherited_w)
    for q in noise["pair_rows"]:
        q["i"], q["j"] = rows[q["i"]]["name"], rows[q["j"]]["name"]
    res.update(noise)
    res["training_seed_noise"] = (
        "not measured: one training run per standalone arch; the intervals cover the archs "
        "(bootstrap over archs) and the evaluation tokens (bootstrap over windows), not "
        "retraining with another seed"
    )
    res["rows"] = rows
    write_json_atomic(out / "ranking.json", res)
    lines = [
        "| arch | name | decoder params (M) | standalone ppl | supernet ppl |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| `{r['short']}` | {r['name']} | {r['decoder_params'] / 1e6:.2f} | "
        f"{r['standalone_ppl']:.1f} ± {r['standalone_ppl_se']:.1f} | "
        f"{r['supernet_ppl']:.1f} ± {r['supernet_ppl_se']:.1f} |"
        for r in rows
    ]
    lines += [
        "",
        f"Kendall tau {res['kendall_tau']:.3f} (95% CI "
        f"{res['kendall_tau_ci'][0]:.2f} to {res['kendall_tau_ci'][1]:.2f}), Spearman "
        f"{res['spearman']:.3f}; proxies: decoder params tau "
        f"{res['proxy_params_kendall_tau']:.3f}, FLOPs tau {res['proxy_flops_kendall_tau']:.3f}",
        f"Token resampling (windows bootstrapped jointly for all models): tau 95% CI "
        f"{res['kendall_tau_ci_tokens'][0]:.2f} to {res['kendall_tau_ci_tokens'][1]:.2f}. "
        f"Pairs of archs: {res['pairs_agree']} of {res['pairs']} ordered alike; "
        f"{res['pairs_resolved']} standalone differences resolved (|delta| > 2 paired SE), "
        f"{res['pairs_resolved_agree']} of them ordered alike by the supernet.",
        "",
        "| pair | standalone delta | supernet delta | resolved | agree |",
        "|---|---:|---:|---|---|",
        *(
            f"| {q['i']} − {q['j']} | {q['standalone_delta']:+.1f} ± "
            f"{q['standalone_delta_se']:.1f} | {q['supernet_delta']:+.1f} ± "
            f"{q['supernet_delta_se']:.1f} | {'yes' if q['standalone_resolved'] else 'no'} | "
            f"{'yes' if q['agree'] else '**no**'} |"
            for q in res["pair_rows"]
        ),
    ]
    write_text_atomic(out / "ranking.md", "\n".join(lines) + "\n")
    ses = [q[k] for q in res["pair_rows"] for k in ("standalone_delta_se", "supernet_delta_se")]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.errorbar(
        [r["standalone_ppl"] for r in rows],
        [r["supernet_ppl"] for r in rows],
        xerr=[r["standalone_ppl_se"] for r in rows],
        yerr=[r["supernet_ppl_se"] for r in rows],
        fmt="o",
    )
    for r in rows:
        ax.annotate(r["name"], (r["standalone_ppl"], r["supernet_ppl"]), fontsize=7)
    lo_, hi_ = (
        min(alone.min(), min(r["supernet_ppl"] for r in rows)),
        max(alone.max(), max(r["supernet_ppl"] for r in rows)),
    )
    ax.plot([lo_, hi_], [lo_, hi_], "k:", lw=0.8, label="y = x")
    ax.set(
        xlabel=f"standalone from scratch, {a.split} ppl (whole split)",
        ylabel="supernet inherited weights, same split",
        title=f"ranking fidelity: Kendall tau {res['kendall_tau']:.2f}\n"
        f"bars: each model's own SE; paired SEs of differences "
        f"{min(ses):.1f}–{max(ses):.1f} ppl (ranking.md)",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "ranking.png", dpi=120)
    print("\n".join(lines))
    return res


if __name__ == "__main__":
    main()
