"""Entry point: build cost LUTs (`python -m cosearch.build_lut --help`).

Parses flags into a `cosearch.hw.build.LutJob` and runs it; no logic lives here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cosearch.cli import add_verbose, main_wrapper, make_parser
from cosearch.hw import timeloop
from cosearch.hw.build import LutJob, run
from cosearch.hw.cost_model import REGIMES
from cosearch.hw.executor import EXECUTORS
from cosearch.hw.gemmini import NAME_PATTERN, parse_hw_list
from cosearch.hw.timeloop import MapperSettings
from cosearch.parsing import positive_ints
from cosearch.scenario import get_scenario
from cosearch.space import PRESETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(
        "Cost every GEMM of a search-space preset (or of a shapes CSV) on Gemmini configs\n"
        "with the analytical model or real Timeloop, writing lut/<preset>/<hw>.csv (regime\n"
        "optimal), lut/<preset>/<regime>/<hw>.csv (other regimes) or\n"
        "lut/<preset>/timeloop/<hw>.csv, each with a .meta.json. Resumable: rows already in\n"
        "the output are skipped.\n\n"
        "    python -m cosearch.build_lut --preset paper --hw grid --seq-lens 128,512\n"
        "    python -m cosearch.build_lut --preset cpu --hw grid --scenario decode\n"
        "    python -m cosearch.build_lut --shapes my_gemms.csv --out costs.csv "
        "--hw gemmini-64k-256k\n"
        "    python -m cosearch.build_lut --preset paper --hw grid --backend timeloop "
        "--executor ray --ray-address HEAD:6379\n"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--preset", choices=sorted(PRESETS), help="search-space preset whose GEMMs to cost"
    )
    src.add_argument("--shapes", metavar="FILE.csv", help="GEMMs to cost (header M,K,N)")
    p.add_argument("--out", metavar="FILE.csv", help="output file (required with --shapes)")
    p.add_argument(
        "--hw",
        required=True,
        help=f"NAME[,NAME...] ({NAME_PATTERN}) or 'grid' (the hardware search "
        "space under its SRAM budget)",
    )
    p.add_argument(
        "--backend",
        choices=("analytical", "timeloop"),
        default="analytical",
        help="the analytical Gemmini model (seconds) or real Timeloop (needs it on PATH)",
    )
    p.add_argument(
        "--regime",
        choices=REGIMES,
        default="optimal",
        help="mapping regime: the best mapping, or the tiles Gemmini's software picks",
    )
    p.add_argument(
        "--seq-lens",
        default="",
        metavar="L[,L...]",
        help="sequence lengths, positive integers (default: the preset's)",
    )
    p.add_argument(
        "--scenario",
        default=None,
        metavar="NAME[:field=value,...]",
        help="serving scenario whose passes to cost (cosearch/scenario.py): prefill "
        "(default: today's tables), decode (one step, batch 1, context = the preset's "
        "length) or chat (prompt + decode steps), e.g. decode:batch=8,context=512; "
        "tables go to lut/<preset>/<scenario tag>/",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="parallel work units: threads of the local executor, or the CPUs of the local "
        "Ray started for the job (with --ray-address, the cluster's CPUs decide)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where the work units run: a thread pool here, or one Ray task per mapper "
        'run (needs pip install -e ".[ray]")',
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="HOST:PORT",
        help="join this Ray cluster (default: a local Ray started for the job)",
    )
    p.add_argument("--lut-dir", default=None, help="LUT root (default: the repository's lut/)")
    p.add_argument("--workdir", default=None, help="Timeloop scratch dir (default: temp)")
    p.add_argument("--victory", type=int, default=5000, help="Timeloop victory condition")
    p.add_argument(
        "--harder-victory",
        type=int,
        default=15000,
        help="victory condition of the first re-run of an unconverged row; each further "
        "try multiplies it by harder-victory/victory again (and the wall limit with it)",
    )
    p.add_argument("--max-tries", type=int, default=2, help="Timeloop runs per row at most")
    p.add_argument(
        "--mapper-timeout-s",
        type=float,
        default=30.0,
        help="wall seconds before the mapper is asked (SIGINT) for its best mapping; rows "
        "whose kept search it cut have wall_cut=1 (a loaded machine needs more)",
    )
    p.add_argument(
        "--threads", type=int, default=2, help="Timeloop mapper threads (per mapper run)"
    )
    p.add_argument(
        "--tools-note",
        default=os.environ.get(timeloop.TOOLS_NOTE_ENV),
        metavar="TEXT",
        help="Timeloop/Accelergy versions and commits as you state them, recorded in the "
        "metadata (neither tool reports its version; their hashes are recorded too); "
        f"default ${timeloop.TOOLS_NOTE_ENV}",
    )
    add_verbose(p)
    a = p.parse_args(argv)
    if a.shapes and not a.out:
        p.error("--shapes needs --out FILE.csv")
    return a


def _main(argv: list[str] | None = None) -> int:
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
        seq_lens=positive_ints(a.seq_lens, "--seq-lens", "128,512") if a.seq_lens else (),
        scenario=get_scenario(a.scenario) if a.scenario else None,
        shapes_file=a.shapes,
        out=a.out,
        jobs=a.jobs,
        workdir=a.workdir,
        executor=a.executor,
        ray_address=a.ray_address,
        settings=MapperSettings(
            victory_condition=a.victory,
            harder_victory=a.harder_victory,
            max_tries=a.max_tries,
            wall_timeout_s=a.mapper_timeout_s,
            num_threads=a.threads,
        ),
        tools_note=a.tools_note,
        **kw,
    )
    for path in run(job):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with one line saying what to fix (130 when interrupted)."""
    return main_wrapper(_main, argv, interrupted="rerun the same command: finished rows are kept")


if __name__ == "__main__":
    sys.exit(main())
