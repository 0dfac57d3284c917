"""Shared command-line plumbing: preset + overrides, logging, friendly errors.

Every entry point uses `base_parser` and `main_wrapper` so flags and error handling look
the same everywhere. No domain logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from cosearch.config import PRESETS, RunConfig, get_preset, override

# Errors a user can act on: printed as one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    FileNotFoundError,
    RuntimeError,
)


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--preset", default="cpu", help=f"named configuration ({', '.join(PRESETS)}; default: cpu)"
    )
    p.add_argument(
        "--data-dir", default=None, help="WikiText-2 directory (default: $COSEARCH_DATA)"
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config field, e.g. train.lr=3e-4 model.dropout=0.2",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def resolve_config(args: argparse.Namespace, extra: list[str] | None = None) -> RunConfig:
    cfg = get_preset(args.preset)
    sets = list(args.set)
    if args.data_dir:
        sets.append(f"data.data_dir={args.data_dir}")
    return override(cfg, sets + list(extra or []))


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("absl", "jax", "orbax"):  # orbax logs every save at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main_wrapper(fn: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run an entry point; turn user errors into one clear line and exit code 2."""
    try:
        fn(argv)
    except USER_ERRORS as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr
        )
        return 130
    return 0
