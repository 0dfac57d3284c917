"""Stand-ins for `accelergy` and `timeloop-mapper` that replay the saved real output in
tests/data/timeloop_example, so the spec -> run -> parse pipeline (and build_lut on either
executor) runs end to end without the binaries. Used by the tests and by
experiments/bench/lut_bench.py; it must not be imported by the library."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data" / "timeloop_example"
EXAMPLE = DATA / "gemmini-256k-64k_M128_K768_N768"
# Accelergy's summaries (which estimator per component) of real runs on the project's
# spec: with the clock period on the MACC and register bits (ok), and without (placeholder)
ACCELERGY = DATA / "accelergy"


def write_fake_tools(
    bindir: Path,
    delay_s: float = 0.0,
    kill_marker: Path | None = None,
    placeholder: bool = False,
) -> Path:
    """Write the two stand-ins into `bindir` (put it first on PATH); returns `bindir`.

    delay_s: the mapper sleeps this long per run (a stand-in for the real search time);
    SIGINT ends the sleep, and the mapper then reports its mapping, as the real one does.
    placeholder: accelergy replays the real run in which the Aladdin plug-in failed and
    its placeholder estimated the MACC and registers (exit code 0, as the real one).
    kill_marker: while this file exists, a mapper run whose work dir contains the file's
    first line (e.g. M512_K64_N512) kills its parent process with SIGKILL, i.e. the thread
    pool's process or the Ray worker that runs it; a second line `once` deletes the file
    first, so only the first such run dies.
    """
    bindir = Path(bindir)
    bindir.mkdir(parents=True, exist_ok=True)
    acc = bindir / "accelergy"
    summaries = ACCELERGY / ("placeholder" if placeholder else "ok")
    acc.write_text(
        f"#!{sys.executable}\nimport pathlib, shutil, sys\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        "for f in ('ERT.yaml', 'ART.yaml'):\n"
        f"    shutil.copy({str(EXAMPLE)!r} + '/' + f, out)\n"
        "for f in ('ERT_summary.yaml', 'ART_summary.yaml'):\n"
        f"    shutil.copy({str(summaries)!r} + '/' + f, out)\n"
        f"log = pathlib.Path({str(summaries)!r}) / 'accelergy.log'\n"
        "print(log.read_text() if log.exists() else 'fake accelergy')\n"
    )
    kill = ""
    if kill_marker is not None:
        kill = (
            f"m = pathlib.Path({str(kill_marker)!r})\n"
            "lines = m.read_text().split() if m.exists() else []\n"
            "if lines and lines[0] in os.getcwd():\n"
            "    if lines[1:] == ['once']:\n"
            "        m.unlink()\n"
            "    os.kill(os.getppid(), signal.SIGKILL)\n"
            "    sys.exit(1)\n"
        )
    mapper = bindir / "timeloop-mapper"
    mapper.write_text(
        f"#!{sys.executable}\nimport os, pathlib, shutil, signal, sys, time\n"
        + kill
        + "def report(*_):\n"
        f"    shutil.copy({str(EXAMPLE)!r} + '/timeloop-mapper.stats.txt', '.')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, report)\n"
        f"time.sleep({float(delay_s)!r})\n"
        "report()\n"
    )
    for p in (acc, mapper):
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return bindir
