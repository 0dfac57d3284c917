"""Stand-ins for `accelergy` and `timeloop-mapper` that replay the saved real output in
tests/data/timeloop_example, so the spec -> run -> parse pipeline (and build_lut on either
executor) runs end to end without the binaries. Used by the tests and by
experiments/bench/lut_bench.py; it must not be imported by the library."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent / "data" / "timeloop_example" / "gemmini-256k-64k_M128_K768_N768"


def write_fake_tools(bindir: Path, delay_s: float = 0.0, kill_marker: Path | None = None) -> Path:
    """Write the two stand-ins into `bindir` (put it first on PATH); returns `bindir`.

    delay_s: the mapper sleeps this long per run (a stand-in for the real search time).
    kill_marker: while this file exists, a mapper run whose work dir contains the file's
    first line (e.g. M512_K64_N512) kills its parent process with SIGKILL, i.e. the thread
    pool's process or the Ray worker that runs it; a second line `once` deletes the file
    first, so only the first such run dies.
    """
    bindir = Path(bindir)
    bindir.mkdir(parents=True, exist_ok=True)
    acc = bindir / "accelergy"
    acc.write_text(
        f"#!{sys.executable}\nimport shutil, sys\n"
        "out = sys.argv[sys.argv.index('-o') + 1]\n"
        "for f in ('ERT.yaml', 'ART.yaml'):\n"
        f"    shutil.copy({str(EXAMPLE)!r} + '/' + f, out)\n"
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
        "if '--version' in sys.argv: print('fake-timeloop 0'); sys.exit(0)\n"
        + kill
        + f"time.sleep({float(delay_s)!r})\n"
        f"shutil.copy({str(EXAMPLE)!r} + '/timeloop-mapper.stats.txt', '.')\n"
    )
    for p in (acc, mapper):
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return bindir
