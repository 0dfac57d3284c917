"""Entry point of the co-search (`python -m cosearch.search --help`).

Parses flags, resolves the run config (a preset, or the checkpoint's own config) and calls
`cosearch.evo.run(config, workdir, ...)`; no search logic lives here.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import replace
from pathlib import Path

from cosearch.cli import base_parser, main_wrapper, setup_logging
from cosearch.config import RunConfig, get_preset, override
from cosearch.parsing import positive_ints
from cosearch.runinfo import shown_path

DESCRIPTION = """\
Evolutionary co-search (NSGA-II) of Transformer architectures and Gemmini configurations:
the Pareto front of perplexity (from a trained supernet) against energy-delay product
(from the cost tables), written with plots and a summary to --out.

    python -m cosearch.search --hw gemmini-64k-256k
    python -m cosearch.search --checkpoint runs/supernet-cpu --hw gemmini-64k-256k,gemmini-256k-64k
    python -m cosearch.search --checkpoint runs/supernet-cpu --hw search --max-latency-ms 5
    python -m cosearch.search --scenario chat --hw search --regime gemmini-tiler
"""

# the trained cpu supernet shipped with the repository (params only)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "supernet-cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(DESCRIPTION)
    p.set_defaults(preset=None)  # default: the checkpoint's own preset
    for action in p._actions:  # argparse has no public way to reword a shared flag
        if action.dest == "preset":
            action.help = "named configuration (tiny, cpu, paper); default: the checkpoint's"
    p.add_argument(
        "--checkpoint",
        default=shown_path(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.is_dir() else None,
        help="supernet run directory (from `python -m "
        "cosearch.train_supernet`); its preset is the default --preset (default: the "
        "committed cpu supernet, checkpoints/supernet-cpu)",
    )
    p.add_argument(
        "--hw",
        default="gemmini-64k-256k",
        help="hardware config name, a comma "
        "list (one search each, fronts merged), or 'search' to add hardware genes",
    )
    p.add_argument(
        "--hw-budget-kib",
        type=int,
        help="--hw search: scratchpad + accumulator "
        "SRAM budget in KiB (default: the hardware space's, 320)",
    )
    p.add_argument(
        "--hw-budget-mm2",
        type=float,
        help="--hw search: area budget in mm^2 at 40 nm, SRAMs (CACTI) + PE array "
        "(GemminiConfig.area_mm2; default: none)",
    )
    p.add_argument(
        "--hw-pe", help="--hw search: PE array sizes to search, e.g. 16,32 (default: 16 only)"
    )
    p.add_argument("--objectives", default="ppl,edp", help="ppl plus any of edp, latency, energy")
    p.add_argument("--max-ppl", type=float, help="constraint: search perplexity at most this (> 1)")
    p.add_argument(
        "--max-latency-ms", type=float, help="constraint: latency at most this many ms (> 0)"
    )
    p.add_argument(
        "--population",
        type=int,
        help="population size, a multiple of 4 "
        "(default: preset's search.population, 40 for cpu/paper)",
    )
    p.add_argument("--generations", type=int, help="generations (default: preset's)")
    p.add_argument(
        "--mutation-prob",
        type=float,
        help="per-gene reset probability (default: preset's search.mutation_prob, 0.2)",
    )
    p.add_argument(
        "--crossover-prob",
        type=float,
        help="per-pair crossover probability (default: preset's search.crossover_prob, 0.9)",
    )
    p.add_argument(
        "--crossover",
        default="uniform",
        choices=["uniform", "two-point"],
        help="crossover operator on the genome",
    )
    p.add_argument("--seed", type=int, help="search seed (default: preset's search.seed)")
    p.add_argument(
        "--eval-tokens",
        type=int,
        help="validation tokens per perplexity during "
        "search (0 = whole split; default: preset's search.eval_tokens)",
    )
    p.add_argument(
        "--no-final-eval",
        action="store_true",
        help="skip re-evaluating the front on the validation and test splits",
    )
    p.add_argument(
        "--final-tokens",
        type=int,
        default=20000,
        help="tokens of each split for the final re-evaluation of the front (default "
        "20000, sized so that the default search finishes in minutes; 0 = the whole split: "
        "costly, every front member on all of both splits)",
    )
    p.add_argument(
        "--budget-tokens",
        type=int,
        help="validation tokens on which the perplexity budgets are decided (paired with "
        "the baseline; 0 = the whole split, as the studies do; default: --final-tokens)",
    )
    p.add_argument(
        "--budget-screen-tokens",
        default="20000",
        help="screen budget candidates on this many validation tokens before scoring them "
        "on --budget-tokens, where that is more (drops those still > 3 paired SE over the "
        "budget; default 20000; 0 = no screen); several stages, smallest first, e.g. "
        "20000,60000: a candidate dropped at one stage is not scored at the next",
    )
    p.add_argument(
        "--budget-max-evals",
        type=int,
        default=24,
        help="at most this many budget re-evaluations per budget and baseline, in order of "
        "EDP (default 24, so that the default search finishes in minutes; a budget that "
        "hit it is marked capped; 0 = no cap, as the studies do)",
    )
    p.add_argument(
        "--regime",
        default="optimal",
        choices=["optimal", "gemmini-tiler"],
        help="LUT mapping regime",
    )
    p.add_argument(
        "--scenario",
        default="prefill",
        metavar="NAME[:field=value,...]",
        help="what latency, energy and EDP are for (cosearch/scenario.py): prefill (one "
        "prefill of the preset's length; default), decode (one generation step, batch 1, "
        "context = the preset's length: per token) or chat (a prompt of half the length, "
        "then as many decode steps: per request); fields override, e.g. "
        "decode:batch=8,context=512; LUTs from lut/<preset>/<scenario tag>/ "
        "(python -m cosearch.build_lut --scenario ...)",
    )
    p.add_argument(
        "--ppl",
        default="f32",
        choices=["f32", "int8"],
        help="perplexity objective: the float32 subnet (default) or its post-training int8 "
        "model (cosearch/supernet/quant.py; one compile per arch); with int8 the front "
        "also reports each member's int8 - float32 difference",
    )
    p.add_argument("--lut-dir", help="directory of the cost tables (default: lut/)")
    p.add_argument(
        "--backend",
        default="auto",
        help="cost backend: auto (LUT, analytical "
        "model for missing rows unless --strict), lut, analytical",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on shapes missing from the LUT instead of falling back to the analytical model",
    )
    p.add_argument(
        "--baseline-checkpoint",
        help="run directory of the from-scratch largest "
        "model (`python -m cosearch.train_supernet --from-scratch largest`)",
    )
    p.add_argument(
        "--baseline-ppl",
        type=float,
        help="validation perplexity of the from-scratch baseline, if known",
    )
    p.add_argument(
        "--out",
        "--workdir",
        dest="out",
        help="run directory (default: runs/search/<preset>-<hw>[-<scenario>][-int8]-seed<seed>)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --out from its last completed generation",
    )
    p.add_argument(
        "--ppl-cache",
        metavar="DIR",
        help="directory of the perplexity cache (default: the run directory); searches of "
        "the same checkpoints (e.g. several seeds) may share one: entries are keyed by the "
        "weights, the split and the tokens, so sharing saves time and changes no number",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Preset (or the checkpoint's config), then --set overrides, then the search flags."""
    if args.preset:
        config = get_preset(args.preset)
    elif args.checkpoint:
        path = Path(args.checkpoint) / "config.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"'{args.checkpoint}' is not a supernet run directory (no config.json); train "
                "one with `python -m cosearch.train_supernet --preset PRESET --workdir DIR`"
            )
        config = RunConfig.from_dict(json.loads(path.read_text())["config"])
        # model and data come from the checkpoint; search settings from today's preset
        config = replace(config, search=get_preset(config.name).search)
    else:
        raise ValueError(
            "give --checkpoint DIR (a supernet trained with `python -m "
            "cosearch.train_supernet --preset PRESET --workdir DIR`)"
        )
    config = override(config, list(args.set))
    flags = {
        "population": args.population,
        "generations": args.generations,
        "mutation_prob": args.mutation_prob,
        "crossover_prob": args.crossover_prob,
        "seed": args.seed,
        "eval_tokens": args.eval_tokens,
    }
    return replace(
        config, search=replace(config.search, **{k: v for k, v in flags.items() if v is not None})
    )


def _main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    from cosearch.evo import SearchOptions, run

    config = resolve_config(args)
    options = SearchOptions(
        hw=args.hw,
        objectives=tuple(o.strip() for o in args.objectives.split(",") if o.strip()),
        max_ppl=args.max_ppl,
        max_latency_ms=args.max_latency_ms,
        crossover=args.crossover,
        regime=args.regime,
        scenario=args.scenario,
        lut_dir=args.lut_dir,
        backend=args.backend,
        strict=args.strict,
        hw_budget_kib=args.hw_budget_kib,
        hw_budget_mm2=args.hw_budget_mm2,
        hw_pe=positive_ints(args.hw_pe, "--hw-pe", "16,32") if args.hw_pe else (),
        baseline_ppl=args.baseline_ppl,
        baseline_checkpoint=args.baseline_checkpoint,
        final_eval=not args.no_final_eval,
        final_tokens=args.final_tokens,
        budget_tokens=args.budget_tokens,
        budget_screen_tokens=(
            ()
            if args.budget_screen_tokens.strip() == "0"
            else positive_ints(args.budget_screen_tokens, "--budget-screen-tokens", "20000,60000")
        ),
        budget_max_evals=args.budget_max_evals,
        ppl=args.ppl,
    )
    hw_tag = args.hw.replace(",", "+")
    sc_tag = "" if args.scenario == "prefill" else "-" + re.sub(r"[^\w.]+", "-", args.scenario)
    sc_tag += "" if args.ppl == "f32" else f"-{args.ppl}"
    out = args.out or f"runs/search/{config.name}-{hw_tag}{sc_tag}-seed{config.search.seed}"
    summary = run(
        config,
        out,
        checkpoint=args.checkpoint,
        data_dir=args.data_dir,
        options=options,
        resume=args.resume,
        progress=not args.quiet,
        ppl_cache_dir=args.ppl_cache,
    )
    t = summary["time"]
    print(
        f"front: {summary['front_size']} pairs of {summary['n_evaluated']} evaluated; "
        f"hypervolume {summary['hypervolume']}; {t['total_s']:.1f} s "
        f"(perplexity {t['ppl_eval_s']:.1f} s, hardware {t['hw_cost_s']:.2f} s, "
        f"DEAP+bookkeeping {t['deap_and_bookkeeping_s']:.1f} s, final eval "
        f"{t['final_eval_s']:.1f} s)"
    )
    for r in summary["edp_reduction"]:
        if r["reduction"]:
            print(
                f"  {r['baseline']} on {r['hw']}, {r['budget']}: {r['reduction']:.2f}x EDP "
                f"({r['arch']})"
            )
    print(f"results in {summary['workdir']} (summary.md, pareto.csv, plots)")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line saying what to fix (130 when interrupted)."""
    return main_wrapper(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
