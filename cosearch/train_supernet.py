"""Train the BigNAS weight-sharing supernet (or, with --from-scratch, one fixed arch).

python -m cosearch.train_supernet --preset cpu --workdir runs/supernet-cpu
python -m cosearch.train_supernet --preset cpu --from-scratch largest --workdir runs/scratch-cpu
python -m cosearch.train_supernet --preset paper --devices 8 --workdir runs/supernet-paper

Multi-host (one process per host, same command on each, shared --workdir):
python -m cosearch.train_supernet --preset paper --coordinator HOST0:1234 \
    --num-processes 2 --process-id I --workdir /shared/runs/supernet-paper
"""

from __future__ import annotations

import sys

from cosearch.cli import base_parser, main_wrapper, resolve_config, setup_logging
from cosearch.errors import UsageError
from cosearch.space import arch_from_arg


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__)
    p.add_argument("--workdir", default=None, help="run directory (default: runs/supernet-PRESET)")
    p.add_argument("--steps", type=int, default=None, help="total training steps")
    p.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="total training length in epochs of the train split (sets --steps)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    p.add_argument(
        "--from-scratch",
        default=None,
        metavar="ARCH",
        help="train one fixed arch: largest, smallest, a JSON object or a JSON file",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="OUT",
        help="instead of training: copy the latest params of --workdir (no "
        "optimizer state) with its config and metrics to OUT",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="data-parallel over the first N devices; the batch size must be a multiple "
        "(default: all devices, every host's in a multi-host run)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="multi-host: call jax.distributed.initialize() first (auto-detects SLURM, Open "
        "MPI, Cloud TPU; or give --coordinator, --num-processes, --process-id)",
    )
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="implies --distributed")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: process count")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's rank")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    if args.export:
        if not args.workdir:
            raise ValueError("--export needs --workdir (the run to export)")
        from cosearch.supernet.checkpoint import export_params

        out = export_params(args.workdir, args.export)
        print(f"exported {args.workdir} -> {out}")
        return {}
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps {args.steps}: expected a positive number of steps")
    if args.epochs is not None and not args.epochs > 0:
        raise UsageError(f"--epochs {args.epochs}: expected a positive number of epochs")
    if args.devices is not None and args.devices < 1:
        raise UsageError(f"--devices {args.devices}: expected a positive number of devices")
    multi_host = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in multi_host) and any(v is None for v in multi_host):
        raise UsageError(
            "--coordinator, --num-processes and --process-id go together; give all three, "
            "or only --distributed to let JAX detect the cluster (SLURM, Open MPI)"
        )
    extra = [] if args.steps is None else [f"train.steps={args.steps}"]
    cfg = resolve_config(args, extra)
    if args.epochs is not None:
        from cosearch.data import load_corpus

        n = len(load_corpus(cfg.data.data_dir or None).train)
        steps = max(1, round(args.epochs * n / (cfg.data.batch_size * cfg.space.seq_len)))
        cfg = resolve_config(args, [f"train.steps={steps}"])
    arch = arch_from_arg(cfg.space, args.from_scratch) if args.from_scratch else None
    workdir = args.workdir or f"runs/{'scratch' if arch else 'supernet'}-{cfg.name}"

    if args.distributed or args.coordinator:
        import jax  # before any other JAX call: every host's devices join one mesh

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    from cosearch.supernet.train import run  # jax import only once flags are valid

    result = run(cfg, workdir, resume=args.resume, from_scratch=arch, devices=args.devices)
    print(f"done: {workdir} step {result.get('step')} loss {result.get('loss', float('nan')):.4f}")
    return result


if __name__ == "__main__":
    sys.exit(main_wrapper(main))
