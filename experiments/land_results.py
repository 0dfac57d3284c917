"""Bring a finished study's results from a folder outside the repository into its results/.

    python experiments/land_results.py SRC DST [--history NAME] [--only NAME ...]
        [--rewrite FROM=TO ...] [--dry-run]

A long study runs with OUT outside the work tree (e.g. `OUT=/data/thesis_cpu bash
experiments/thesis_cpu/run.sh`), where its resumable state survives a fresh checkout.
When it has finished, this copies what the repository keeps into DST (e.g.
experiments/thesis_cpu/results): every file under SRC except each run's `state/` (the
resumable NSGA-II state) and `ppl-cache/` (tens of MB of perplexity scores), with SRC's
path rewritten to DST's in the text files (the commands in each config.json, paths in JSON,
Markdown and CSV), so that the committed files name the repository's folder and no path of
the machine. With --history NAME, DST's current files (all but earlier history-* folders)
first move to DST/history-NAME, so that a report's old tables keep their files.
With --only NAME (repeatable), only SRC's top-level entries of those names are copied: a
study whose first seed has finished can land it while the next seeds still run in SRC.
With --rewrite FROM=TO (repeatable), the path FROM is also rewritten to TO in the text files:
a path outside SRC that the runs name, e.g. a perplexity cache shared with another study
(`--rewrite /data/thesis_cpu/ppl-cache=experiments/thesis_cpu/results/ppl-cache`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

SKIP_DIRS = {"state", "ppl-cache", "__pycache__"}
# a perplexity cache kept in a run's own folder (cosearch.supernet.score_cache): not results
SKIP_FILES = {"ppl_cache.json", "ppl_cache.jsonl"}
TEXT = {".json", ".jsonl", ".md", ".csv", ".txt"}


def plan(src: Path, dst: Path, only: list[str] | None = None) -> list[tuple[Path, Path]]:
    """(source file, destination file) for every file to copy, in a stable order; `only`:
    the top-level names of SRC to take (all when None)."""
    out = []
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if only is not None and rel.parts[0] not in only:
            continue
        if f.is_file() and not SKIP_DIRS & set(rel.parts[:-1]) and f.name not in SKIP_FILES:
            out.append((f, dst / rel))
    return out


def land(
    src: Path,
    dst: Path,
    history: str | None = None,
    dry_run: bool = False,
    only: list[str] | None = None,
    rewrite: dict[str, str] | None = None,
) -> list[Path]:
    """Copy `src` into `dst` (see the module's docstring); returns the files written.
    `rewrite`: further {path: replacement} applied to the text files, after SRC's own."""
    src, dst = src.resolve(), dst.resolve()
    if not src.is_dir():
        raise SystemExit(f"error: {src} is not a folder; pass the study's OUT folder as SRC")
    if dst == src or src in dst.parents or dst in src.parents:
        raise SystemExit(f"error: SRC {src} and DST {dst} overlap; pass two separate folders")
    if only is not None:
        missing = [n for n in only if not (src / n).exists()]
        if missing:
            raise SystemExit(f"error: --only {missing[0]}: no such entry in {src}; list it with ls")
    files = plan(src, dst, only)
    if not files:
        raise SystemExit(f"error: nothing to copy under {src} (only state/ or ppl-cache/?)")
    if dry_run:
        return [d for _, d in files]
    if history:
        old = dst / f"history-{history}"
        if old.exists():
            raise SystemExit(f"error: {old} exists; pick another --history NAME")
        current = [p for p in dst.iterdir() if not p.name.startswith("history-")]
        if current:
            old.mkdir(parents=True)
            for p in current:
                shutil.move(str(p), str(old / p.name))
    written = []
    replace = {str(src): _repo_relative(dst), **(rewrite or {})}  # SRC's path first
    outside = str(src.parent) + "/"  # paths of SRC's sibling folders: not rewritten
    for s, d in files:
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.suffix in TEXT:
            text = s.read_text()
            for old, new in replace.items():
                text = text.replace(old, new)
            d.write_text(text)
            if outside in text:
                print(
                    f"warning: {d} still names a path under {outside} (another run's "
                    "files?); pass --rewrite FROM=TO to name the repository's copy",
                    file=sys.stderr,
                )
        else:
            shutil.copy2(s, d)
        written.append(d)
    return written


def _repo_relative(dst: Path) -> str:
    """DST as the repository names it (relative to the repository root when inside it)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(dst.relative_to(root))
    except ValueError:
        return str(dst)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("src", type=Path, help="the study's OUT folder (outside the repository)")
    p.add_argument("dst", type=Path, help="the study's results/ folder in the repository")
    p.add_argument("--history", help="move DST's current files to DST/history-NAME first")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="copy only this top-level entry of SRC (repeatable; default: all)",
    )
    p.add_argument(
        "--rewrite",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="also rewrite the path FROM to TO in the text files (repeatable)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be written")
    a = p.parse_args(argv)
    rewrite = {}
    for r in a.rewrite:
        old, sep, new = r.partition("=")
        if not sep or not old or not new:
            p.error(f"--rewrite {r!r}: give it as FROM=TO, e.g. /data/ppl-cache=results/ppl-cache")
        rewrite[old.rstrip("/")] = new.rstrip("/")
    written = land(a.src, a.dst, a.history, a.dry_run, a.only, rewrite)
    for f in written:
        print(f)
    print(f"{'would write' if a.dry_run else 'wrote'} {len(written)} files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
