"""Entry point of the throughput-wall profiler (`python -m cosearch.profile_wall --help`).

Parses flags into `cosearch.wall.sweep.SweepOptions` and calls `cosearch.wall.sweep.run`;
no logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cosearch.cli import add_verbose, main_wrapper, make_parser, setup_logging

DESCRIPTION = """\
Profile the search space's models (subnets of a trained supernet) across sequence lengths
and find their throughput walls. Each (arch, length, attention) case runs in its own
process under a memory limit and a timeout; failures are recorded with their reason and
the sweep goes on; rerunning with the same --out resumes.

    python -m cosearch.profile_wall --checkpoint runs/supernet-cpu \\
        --archs largest,smallest,pareto:runs/search/cpu/pareto.json \\
        --seq 128,256,512,1024,2048,4096,8192 --attention dense,chunked \\
        --mem-limit-gb 4 --out experiments/walls/results

With --scenario decode it measures generation with a KV cache instead: a jitted
single-token step against a cache preallocated to each context, for every batch size:

    python -m cosearch.profile_wall --checkpoint runs/supernet-cpu --scenario decode \\
        --contexts 128,512,2048,8192,32768 --batches 1,4,16,64 --out runs/walls-decode
"""

DEFAULT_SEQ = "128,256,512,1024,2048,4096,8192"
DEFAULT_CONTEXTS = "128,512,2048,8192,32768"
DEFAULT_BATCHES = "1,4,16,64"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    # The model comes from the checkpoint's own config, so there is no --preset, --set or
    # --data-dir: the profiler needs only the vocabulary size, which config.json holds.
    p = make_parser(DESCRIPTION)
    p.add_argument(
        "--checkpoint",
        required=True,
        help="supernet run directory (from `python -m cosearch.train_supernet`)",
    )
    p.add_argument(
        "--archs",
        default="largest,smallest",
        help="comma list of largest, "
        "smallest, random:N, pareto:FILE (a search run's pareto.json), a JSON file "
        "or an inline JSON arch (default: largest,smallest)",
    )
    p.add_argument(
        "--pareto-max",
        type=int,
        default=3,
        help="at most this many archs from "
        "each pareto:FILE, evenly spaced along the front (default 3)",
    )
    p.add_argument(
        "--scenario",
        default="prefill",
        choices=["prefill", "decode"],
        help="prefill: the forward over whole sequences (default); decode: KV-cache "
        "generation, one token per sequence per step, against --contexts x --batches",
    )
    p.add_argument(
        "--seq",
        default=None,
        help=f"prefill: sequence lengths, comma list of positive integers (default {DEFAULT_SEQ})",
    )
    p.add_argument("--batch", type=int, default=1, help="prefill: batch size (default 1)")
    p.add_argument(
        "--contexts",
        default=None,
        help=f"decode: context lengths the cache is preallocated to (default {DEFAULT_CONTEXTS})",
    )
    p.add_argument(
        "--batches",
        default=None,
        help=f"decode: batch sizes, comma list (default {DEFAULT_BATCHES})",
    )
    p.add_argument(
        "--decode-steps",
        type=int,
        default=8,
        help="decode: single-token steps per timed run, at the end of the context (default 8)",
    )
    p.add_argument(
        "--attention",
        default="dense,chunked",
        help="dense (materialises the L x L scores), chunked (256 queries at a time), or both",
    )
    p.add_argument(
        "--mem-limit-gb",
        type=float,
        default=4.0,
        help="memory limit per case in "
        "GiB (host RSS watchdog; on GPU also the device peak); 0 = none (default 4)",
    )
    p.add_argument(
        "--timeout-s",
        type=float,
        default=120.0,
        help="wall-clock limit per case, load and compile included (default 120)",
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs per case, >= 5 (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    p.add_argument(
        "--logits",
        default="all",
        choices=["all", "last"],
        help="log-probs at every position (the study's forward, default) or the last one only",
    )
    p.add_argument(
        "--hw",
        default="gemmini-64k-256k,gemmini-256k-64k",
        help="Gemmini configs of the modelled view (comma list)",
    )
    p.add_argument(
        "--no-skip-after-fail",
        action="store_true",
        help="also run lengths "
        "longer than one that ran out of memory or time, or whose time extrapolated "
        "from the shorter ones exceeds --timeout-s (default: record them as "
        "skipped, with the reason)",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="on resume, rerun failed cases too (default: only unfinished ones)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random:N and the input tokens")
    p.add_argument("--out", required=True, help="results directory (resumed if it exists)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    add_verbose(p)
    return p.parse_args(argv)


def _main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    from cosearch.errors import UsageError
    from cosearch.parsing import positive_ints
    from cosearch.wall.sweep import SweepOptions, parse_attention, parse_seq, run

    decode = args.scenario == "decode"
    wrong = ("--seq", args.seq) if decode else ("--contexts", args.contexts)
    if wrong[1] is not None or (not decode and args.batches is not None):
        flag = wrong[0] if wrong[1] is not None else "--batches"
        right = "--contexts/--batches" if decode else "--seq/--batch"
        raise UsageError(f"{flag} does not apply to --scenario {args.scenario}; use {right}")
    seq = (args.contexts or DEFAULT_CONTEXTS) if decode else (args.seq or DEFAULT_SEQ)
    opts = SweepOptions(
        archs=args.archs,
        seq=positive_ints(seq, "--contexts", "128,2048") if decode else parse_seq(seq),
        scenario=args.scenario,
        batches=positive_ints(args.batches or DEFAULT_BATCHES, "--batches", "1,4,16"),
        steps=args.decode_steps,
        attention=parse_attention(args.attention),
        batch=args.batch,
        mem_limit_gb=args.mem_limit_gb or None,
        timeout_s=args.timeout_s,
        runs=args.runs,
        warmup=args.warmup,
        logits=args.logits,
        skip_after_fail=not args.no_skip_after_fail,
        retry_failed=args.retry_failed,
        pareto_max=args.pareto_max,
        seed=args.seed,
        hw=tuple(h.strip() for h in args.hw.split(",") if h.strip()),
    )
    progress = None
    if not args.quiet:
        from tqdm.auto import tqdm

        def progress(cases):
            bar = tqdm(cases, desc="cases", unit="case")
            for m, case in bar:
                what = f"b={case.batch}" if case.scenario == "decode" else case.attention
                bar.set_postfix_str(f"{m.label} L={case.seq_len} {what}")
                yield m, case

    s = run(args.checkpoint, args.out, opts, progress=progress)
    print(
        f"{s['cases']} cases: {s['run']} run, {s['resumed']} already done; ok {s['ok']}, "
        f"oom {s['oom']}, timeout {s['timeout']}, error {s['error']}, skipped "
        f"{s['skipped']}; {s['elapsed_s']:.0f} s. Tables: {s.get('report')}"
    )
    return s


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line saying what to fix (130 when interrupted)."""
    return main_wrapper(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
