"""Entry point: build cost LUTs (`python -m cosearch.build_lut --help`).

Parses flags into a `cosearch.hw.build.LutJob` and runs it; no logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import sys

from cosearch.hw.build import LutJob, run
from cosearch.hw.cost_model import REGIMES
from cosearch.hw.gemmini import NAME_PATTERN, parse_hw_list
from cosearch.hw.timeloop import MapperSettings
from cosearch.space import PRESETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cosearch.build_lut",
        description="Cost every GEMM of a search-space preset (or of a shapes CSV) on Gemmini "
        "configs with the analytical model or real Timeloop, writing lut/<preset>/<hw>.csv "
        "(regime optimal), lut/<preset>/<regime>/<hw>.csv (other regimes) or "
        "lut/<preset>/timeloop/<hw>.csv, each with a .meta.json. Resumable: rows already "
        "in the output are skipped.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=sorted(PRESETS), help="search-space preset")
    src.add_argument("--shapes", metavar="FILE.csv", help="GEMMs to cost (header M,K,N)")
    p.add_argument("--out", metavar="FILE.csv", help="output file (required with --shapes)")
    p.add_argument(
        "--hw",
        required=True,
        help=f"NAME[,NAME...] ({NAME_PATTERN}) or 'grid' (the hardware search "
        "space under its SRAM budget)",
    )
    p.add_argument("--backend", choices=("analytical", "timeloop"), default="analytical")
    p.add_argument("--regime", choices=REGIMES, default="optimal")
    p.add_argument(
        "--seq-lens",
        default="",
        metavar="L[,L...]",
        help="sequence lengths (default: the preset's)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="parallel Timeloop runs (the analytical backend is vectorised)",
    )
    p.add_argument("--lut-dir", default=None, help="LUT root (default: the repository's lut/)")
    p.add_argument("--workdir", default=None, help="Timeloop scratch dir (default: temp)")
    p.add_argument("--victory", type=int, default=5000, help="Timeloop victory condition")
    p.add_argument(
        "--harder-victory",
        type=int,
        default=15000,
        help="victory condition for re-running unconverged rows",
    )
    p.add_argument("--max-tries", type=int, default=2, help="Timeloop runs per row at most")
    p.add_argument(
        "--mapper-timeout-s",
        type=float,
        default=30.0,
        help="wall seconds before the mapper is asked (SIGINT) for its best",
    )
    p.add_argument("--threads", type=int, default=2, help="Timeloop mapper threads")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.shapes and not a.out:
        p.error("--shapes needs --out FILE.csv")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    kw = {"lut_dir": a.lut_dir} if a.lut_dir else {}
    job = LutJob(
        hws=tuple(parse_hw_list(a.hw)),
        backend=a.backend,
        regime=a.regime,
        preset=a.preset,
        seq_lens=tuple(int(x) for x in a.seq_lens.split(",") if x),
        shapes_file=a.shapes,
        out=a.out,
        jobs=a.jobs,
        workdir=a.workdir,
        settings=MapperSettings(
            victory_condition=a.victory,
            harder_victory=a.harder_victory,
            max_tries=a.max_tries,
            wall_timeout_s=a.mapper_timeout_s,
            num_threads=a.threads,
        ),
        **kw,
    )
    for path in run(job):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
