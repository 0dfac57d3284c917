"""Perplexity of any archs of a trained supernet or from-scratch checkpoint.

python -m cosearch.evaluate --archs largest,smallest
python -m cosearch.evaluate --checkpoint runs/scratch-cpu --archs largest --split test --json
python -m cosearch.evaluate --archs largest,L3-d256-h4.2.4-f512.256.1024 --max-tokens 20000
python -m cosearch.evaluate --archs largest,smallest --int8 --json

Scores every arch on the same evaluation windows of the split (the whole split unless
--max-tokens), so each arch after the first also gets its paired perplexity difference to
the first with a standard error over windows (cosearch.stats). --int8 adds the
post-training int8 model's perplexity (cosearch.supernet.quant: weights per channel,
activations per tensor calibrated on 64 train-split windows) and its paired difference to
float32 on the same windows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cosearch.cli import add_verbose, main_wrapper, make_parser, setup_logging
from cosearch.errors import UsageError
from cosearch.parsing import split_top_level
from cosearch.runinfo import shown_path
from cosearch.space import arch_from_arg

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "supernet-cpu"


def main(argv: list[str] | None = None) -> list[dict]:
    p = make_parser(__doc__, "cosearch.evaluate")  # the checkpoint's own config: no --preset/--set
    p.add_argument(
        "--data-dir", default=None, help="WikiText-2 directory (default: $COSEARCH_DATA)"
    )
    add_verbose(p)
    p.add_argument(
        "--checkpoint",
        default=shown_path(DEFAULT_CHECKPOINT),
        help="run directory of train_supernet (default: the committed cpu supernet)",
    )
    p.add_argument(
        "--archs",
        default="largest",
        help="comma-separated: largest, smallest, an arch id as the reports print it "
        "(L3-d256-h4.2.4-f512.256.1024), a JSON object or a JSON file (default: largest)",
    )
    p.add_argument("--split", default="valid", choices=("valid", "test"), help="default: valid")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="score only the first N tokens of the split (default: the whole split)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also score the post-training int8 model (ppl_int8, delta_ppl_int8 = int8 - "
        "float32 paired over the same windows; cosearch/supernet/quant.py)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    if args.max_tokens is not None and args.max_tokens < 1:
        raise UsageError(f"--max-tokens {args.max_tokens}: expected a positive token count")

    from cosearch.stats import paired_delta, ppl_se
    from cosearch.supernet.evaluate import load_evaluator

    ev = load_evaluator(args.checkpoint, args.data_dir)
    names = split_top_level(args.archs)
    if not names:
        raise UsageError("--archs is empty; give e.g. largest,smallest")
    archs = [arch_from_arg(ev.space, a) for a in names]
    rows, first = [], None
    for arch in archs:
        w = ev.windows(arch, args.split, args.max_tokens)
        row = {
            "arch": arch.to_dict(),
            "short": arch.short(),
            "split": args.split,
            "tokens": int(w.tokens.sum()),
            "windows": len(w.tokens),
            "ppl": w.ppl,
            "ppl_se": ppl_se(w),
            "checkpoint": str(args.checkpoint),
            "step": ev.step,
        }
        if args.int8:
            from cosearch.supernet.quant import RECIPE

            w8 = ev.windows(arch, args.split, args.max_tokens, int8=True)
            d8, se8 = paired_delta(w8, w)
            row.update(
                ppl_int8=w8.ppl,
                ppl_int8_se=ppl_se(w8),
                delta_ppl_int8=d8,
                delta_ppl_int8_se=se8,
                int8_recipe=RECIPE,
            )
        if first is None:
            first = w
        else:
            d, se = paired_delta(w, first)
            row.update(delta_ppl_vs_first=d, delta_ppl_se=se)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{args.checkpoint} (step {ev.step}), {args.split}: {rows[0]['tokens']:,} tokens")
        for r in rows:
            delta = (
                f"  {r['delta_ppl_vs_first']:+.2f} ± {r['delta_ppl_se']:.2f} vs first"
                if "delta_ppl_vs_first" in r
                else ""
            )
            int8 = (
                f"  int8 {r['ppl_int8']:8.2f} ({r['delta_ppl_int8']:+.2f} ± "
                f"{r['delta_ppl_int8_se']:.2f})"
                if "ppl_int8" in r
                else ""
            )
            print(f"{r['short']:<40} ppl {r['ppl']:8.2f} ± {r['ppl_se']:.2f}{int8}{delta}")
    return rows


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
