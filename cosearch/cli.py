"""Shared command-line plumbing: parsers, preset + overrides, logging, friendly errors.

Every entry point builds its parser with `make_parser` (or `base_parser`, which adds the
run-config flags) and runs through `main_wrapper`, so usage lines, help and error handling
look the same everywhere. No domain logic lives here.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import Callable
from typing import NoReturn

from cosearch import stop
from cosearch.config import PRESETS, RunConfig, get_preset, override
from cosearch.errors import UsageError, UserError
from cosearch.runinfo import program

# Errors a user can act on: printed as one line, exit code 2, no traceback. The project's
# own `UserError`s, plus the built-ins that library code (and the config layer) raises
# with a message meant for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    KeyError,
    FileNotFoundError,
    RuntimeError,
)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and shows every flag's default (unless its help
    already says it, or there is none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "(default" in text
            or "default:" in text
            or default is None
            or isinstance(default, bool)
            or default in ([], "", argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose complaints are `UsageError`s, reported by `main_wrapper` as
    one line like every other bad input (argparse would print usage and exit itself)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _caller_module() -> str:
    """The module that called the function calling this one (run as `-m`, its real name)."""
    frame = inspect.currentframe().f_back.f_back  # type: ignore[union-attr]
    g = frame.f_globals  # type: ignore[union-attr]
    spec = g.get("__spec__")
    return spec.name if spec is not None else g["__name__"]


def make_parser(description: str, module: str | None = None) -> Parser:
    """A parser whose usage line reads `python -m <module>` (default: the calling module)."""
    module = module or _caller_module()
    return Parser(prog=program(module), description=description, formatter_class=HelpFormatter)


def add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")


def base_parser(description: str, module: str | None = None) -> Parser:
    """`make_parser` plus the run-config flags: --preset, --data-dir, --set, -v."""
    p = make_parser(description, module or _caller_module())
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
    add_verbose(p)
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


def error_line(e: BaseException) -> str:
    """The one line a user sees for a user error (KeyError would quote its message)."""
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return "error: " + " ".join(msg.split("\n"))


def main_wrapper(
    fn: Callable[[list[str] | None], object],
    argv: list[str] | None = None,
    interrupted: str = "rerun with --resume to continue from the last checkpoint",
) -> int:
    """Run an entry point; turn user errors into one clear line and exit code 2. An int
    that `fn` returns is its exit code (so a wrapped entry point may be wrapped again)."""
    try:
        with stop.handle_signals():  # a swallowed Ctrl-C is raised again: see cosearch.stop
            result = fn(argv)
    except USER_ERRORS as e:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
