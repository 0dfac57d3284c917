"""The LUT regeneration job behind `python -m cosearch.build_lut`.

Owns the job description (`LutJob`: which shapes, which configs, which backend/regime,
deterministic), running it in parallel and resumably (rows already in the output file are
skipped; the file is rewritten atomically as rows finish), and the metadata JSON next to
every table (backend, regime, tool versions, spec hash, mapper settings, calibration,
date, git commit, per-row mapper time). It must not define costs itself, nor know where
its work units run (`cosearch.hw.executor`: a local thread pool or Ray tasks).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cosearch import stop
from cosearch.errors import InputFileError, UserError
from cosearch.hw import timeloop
from cosearch.hw.cost_model import REGIMES, SHIPPED_TILER, default_calibration, gemm_cost
from cosearch.hw.executor import EXECUTORS, make_executor
from cosearch.hw.gemmini import GemminiConfig
from cosearch.hw.lut import (
    DEFAULT_LUT_DIR,
    lut_path,
    meta_path,
    read_lut,
    row_context,
    write_lut,
    write_text_atomic,
)
from cosearch.hw.workload import GEMM_CONTEXT, default_output_layer, space_gemm_shapes
from cosearch.runinfo import check_output_dir, check_output_file, git_commit, git_dirty
from cosearch.scenario import Scenario, get_scenario
from cosearch.space import get_space

log = logging.getLogger(__name__)

# Analytical rows per work unit: vectorised within a unit, units spread over the executor.
ANALYTICAL_CHUNK = 256


@dataclass(frozen=True)
class LutJob:
    """What to cost. Either a preset (all GEMM shapes of its space at `seq_lens`) or an
    explicit shapes file; `out` overrides the output file (one file for all configs)."""

    hws: tuple[GemminiConfig, ...]
    backend: str = "analytical"  # 'analytical' | 'timeloop'
    regime: str = "optimal"
    preset: str | None = None
    seq_lens: tuple[int, ...] = ()
    # a serving scenario's passes (cosearch.scenario) instead of prefills at seq_lens
    scenario: Scenario | None = None
    shapes_file: str | None = None
    out: str | None = None
    lut_dir: str = str(DEFAULT_LUT_DIR)
    jobs: int = 1
    workdir: str | None = None  # Timeloop scratch (default: a temp dir)
    executor: str = "local"  # 'local' (threads) | 'ray' (one Ray task per work unit)
    ray_address: str | None = None  # join this Ray cluster (default: a local Ray, `jobs` CPUs)
    settings: timeloop.MapperSettings = field(default_factory=timeloop.MapperSettings)
    # the tools' versions as the user states them (Timeloop and Accelergy report none)
    tools_note: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("analytical", "timeloop"):
            raise ValueError(f"backend must be 'analytical' or 'timeloop', got '{self.backend}'")
        if self.regime not in REGIMES:
            raise ValueError(f"unknown regime '{self.regime}'; known: {', '.join(REGIMES)}")
        if self.backend == "timeloop" and self.regime != "optimal":
            raise ValueError(
                "Timeloop searches mappings: only --regime optimal makes sense "
                "with --backend timeloop"
            )
        if (self.preset is None) == (self.shapes_file is None):
            raise ValueError("give exactly one of --preset or --shapes FILE.csv")
        if self.shapes_file is not None and self.out is None:
            raise ValueError("--shapes needs --out FILE.csv")
        if self.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {self.jobs}")
        if self.executor not in EXECUTORS:
            raise UserError(
                f"--executor must be one of {', '.join(EXECUTORS)}, got '{self.executor}'"
            )
        if self.ray_address is not None and self.executor != "ray":
            raise UserError("--ray-address needs --executor ray")
        bad = [L for L in self.seq_lens if not (isinstance(L, int) and L > 0)]
        if bad:
            raise UserError(f"--seq-lens must be positive integers, got {bad}")
        if self.scenario_tag is not None and (self.seq_lens or self.preset is None):
            raise UserError(
                "--scenario costs the passes of a preset's scenario: it takes --preset, "
                "and neither --seq-lens (set the scenario's lengths, e.g. "
                "decode:context=512) nor --shapes"
            )
        if self.out is not None:
            check_output_file(self.out, "--out")
        else:
            check_output_dir(self.lut_dir, "--lut-dir")

    def shapes(self) -> list[tuple[str, int, int, int]]:
        """(op, M, K, N) rows, one per shape and GEMM context (`workload.CONTEXTS`: op
        names of the same context joined with '+'; for Timeloop one per shape), sorted."""
        if self.shapes_file is not None:
            return read_shapes(self.shapes_file)
        space = get_space(self.preset)
        rows = space_gemm_shapes(space, self.seq_lens or None, scenario=self.scenario)
        by: dict[tuple[str, int, int, int], list[str]] = {}
        for op, M, K, N in rows:
            # Timeloop's optimal mapping ignores the context: one run per shape, whose row
            # every context's lookup finds (`LutTable.get` falls back to the shape)
            ctx = "" if self.backend == "timeloop" else GEMM_CONTEXT[op]
            by.setdefault((ctx, M, K, N), []).append(op)
        return sorted(
            ((("+".join(dict.fromkeys(v))),) + k[1:] for k, v in by.items()),
            key=lambda r: (r[1], r[2], r[3], r[0]),
        )

    def path(self, hw: GemminiConfig) -> Path:
        if self.out is not None:
            return Path(self.out)
        return lut_path(
            self.lut_dir, self.preset, hw.name, self.regime, self.backend, self.scenario_tag
        )

    @property
    def scenario_tag(self) -> str | None:
        """The LUT subdirectory of a non-default scenario (None: today's prefill tables)."""
        if self.scenario is None or self.scenario.is_default or self.preset is None:
            return None
        return self.scenario.tag(get_space(self.preset).seq_len)

    def description(self) -> dict:
        """Deterministic job description (hashed into the metadata)."""
        return {
            "backend": self.backend,
            "regime": self.regime,
            "preset": self.preset,
            "seq_lens": list(self.seq_lens),
            **({"scenario": self.scenario_tag} if self.scenario_tag else {}),
            "hws": [h.name for h in self.hws],
            "shapes": [list(s) for s in self.shapes()],
            "settings": self.settings.to_dict() if self.backend == "timeloop" else None,
            "spec_hashes": (
                {h.name: timeloop.spec_hash(h, self.settings) for h in self.hws}
                if self.backend == "timeloop"
                else None
            ),
            "calibration": (
                default_calibration().__dict__ if self.backend == "analytical" else None
            ),
            "tiler": (
                SHIPPED_TILER.__dict__
                if self.backend == "analytical" and self.regime == "gemmini-tiler"
                else None
            ),
        }


def read_shapes(path: str | Path) -> list[tuple[str, int, int, int]]:
    """A CSV with header M,K,N (optional op column) and at least one row of positive
    integers; anything else is an InputFileError naming the file and line."""
    path = Path(path)
    fix = "give a CSV with the header M,K,N (optional column op) and one GEMM per row"
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise InputFileError(f"--shapes '{path}' {what}; {fix}")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            r = csv.DictReader(f)
            if not r.fieldnames or not {"M", "K", "N"} <= set(r.fieldnames):
                raise InputFileError(
                    f"{path}: expected a CSV header with columns M,K,N; found "
                    f"{','.join(r.fieldnames or []) or 'an empty file'}; {fix}"
                )
            out = []
            for i, row in enumerate(r, start=2):
                dims = [_positive_int(row.get(k)) for k in ("M", "K", "N")]
                if None in dims:
                    got = ", ".join(f"{k}={row.get(k)!r}" for k in ("M", "K", "N"))
                    raise InputFileError(
                        f"{path}, line {i}: M, K, N must be positive integers, got {got}"
                    )
                out.append((row.get("op") or "gemm", *dims))
    except UnicodeDecodeError:
        raise InputFileError(f"--shapes '{path}' is not UTF-8 text; {fix}") from None
    if not out:
        raise InputFileError(f"{path} has a header but no rows; {fix}")
    return out


def _positive_int(v: str | None) -> int | None:
    try:
        n = int(str(v).strip())
    except ValueError:
        return None
    return n if n > 0 else None


def _analytical_rows(job: LutJob, hw: GemminiConfig, todo: list) -> list[dict]:
    if not todo:
        return []
    arr = np.array([t[1:] for t in todo])
    ctx = [row_context(t[0]) for t in todo]
    c = gemm_cost(arr[:, 0], arr[:, 1], arr[:, 2], hw, regime=job.regime, context=ctx)
    return [
        {
            "hw": hw.name,
            "regime": job.regime,
            "op": t[0],
            "M": t[1],
            "K": t[2],
            "N": t[3],
            "cycles": float(c["cycles"][i]),
            "energy_pJ": float(c["energy_pJ"][i]),
            "backend": "analytical",
            "victory": "",
            "tries": "",
            "mapper_seconds": "",
        }
        for i, t in enumerate(todo)
    ]


def _timeloop_row(job: LutJob, hw: GemminiConfig, t: tuple, workroot: Path) -> dict:
    res = timeloop.cost_gemm(hw, t[1], t[2], t[3], workroot, job.settings)
    return {
        "hw": hw.name,
        "regime": "optimal",
        "op": t[0],
        "M": t[1],
        "K": t[2],
        "N": t[3],
        "cycles": res.cycles,
        "energy_pJ": res.energy_pJ,
        "backend": "timeloop",
        "victory": res.victory,
        "tries": res.tries,
        "mapper_seconds": round(res.mapper_seconds, 2),
        "wall_cut": int(res.wall_cut),
    }


def _cost_unit(job: LutJob, hw: GemminiConfig, todo: list, workroot: Path) -> list[dict]:
    """One work unit's rows (run by the executor: a thread here, or a Ray task)."""
    if job.backend == "analytical":
        return _analytical_rows(job, hw, todo)
    return [_timeloop_row(job, hw, t, workroot) for t in todo]


def _check_tools(hws: tuple[GemminiConfig, ...], workroot: Path, note: str | None) -> dict:
    """Where the work units run: the tools' versions, and Accelergy's tables for every
    config, checked before any mapper runs (a placeholder estimate fails the job here);
    fails if the tools are missing."""
    timeloop.require_tools()
    accelergy = {}
    for hw in hws:
        wd = timeloop.run_accelergy(hw, workroot / hw.name / "_accelergy")
        accelergy[hw.name] = timeloop.accelergy_summary(wd)
    return {"tool_versions": timeloop.tool_versions(note), "accelergy": accelergy}


def _meta(
    job: LutJob,
    hw: GemminiConfig,
    rows: list[dict],
    tools: dict | None = None,
    partial: str | None = None,
) -> dict:
    """`tools`: what `_check_tools` found (None when the job had nothing to run: then the
    previous metadata's tool record is kept). `partial`: why the table is incomplete."""
    desc = job.description()
    meta = {
        "backend": job.backend,
        "regime": job.regime,
        "preset": job.preset,
        "seq_lens": list(job.seq_lens),
        "scenario": _scenario_meta(job),
        "hw": hw.name,
        "hw_config": hw.__dict__,
        "n_rows": len(rows),
        "n_shapes": len(desc["shapes"]),
        "partial": partial,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "executor": job.executor,
        "job_hash": hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16],
    }
    if job.backend == "timeloop":
        secs = [float(r["mapper_seconds"]) for r in rows if r.get("mapper_seconds") != ""]
        tools = tools or {}
        meta.update(
            {
                "tool_versions": tools.get("tool_versions")
                or timeloop.tool_versions(job.tools_note),
                "accelergy": tools.get("accelergy", {}).get(hw.name),
                "spec_hash": timeloop.spec_hash(hw, job.settings),
                "mapper_settings": job.settings.to_dict(),
                "victory_per_try": [
                    job.settings.victory_for_try(k) for k in range(job.settings.max_tries)
                ],
                "wall_s_per_try": [
                    job.settings.wall_for_try(k) for k in range(job.settings.max_tries)
                ],
                "mapper_seconds_total": float(np.sum(secs)) if secs else 0.0,
                "rows_rerun": int(sum(1 for r in rows if int(r.get("tries") or 1) > 1)),
                "rows_wall_cut": int(sum(1 for r in rows if int(r.get("wall_cut") or 0))),
                "note": "per-row mapper time, victory (of the kept mapping), tries and "
                "wall_cut (1: the wall limit stopped that search) are columns of the CSV",
            }
        )
    else:
        cal = default_calibration()
        meta.update(
            {
                "tool_versions": {"cosearch.hw.cost_model": "analytical (no external tool)"},
                "calibration": {
                    "energy_scale": cal.energy_scale,
                    "cycles_scale": cal.cycles_scale,
                    "source": cal.source,
                },
                "model": "cosearch/hw/cost_model.py; per-access energies cosearch/hw/gemmini.py",
            }
        )
        if job.regime == "gemmini-tiler":
            meta["tiler"] = dict(SHIPPED_TILER.__dict__)
        if job.preset is not None:
            out = default_output_layer(get_space(job.preset))
            meta["output_layer"] = {
                "vocab": out.vocab,
                "cutoffs": list(out.cutoffs),
                "tail_dims": list(out.tail_dims),
            }
    return meta


class LutJobIncomplete(RuntimeError):
    """Some work units failed; the table holds every other row (rerun to retry them)."""


def _sort_key(r: dict) -> tuple:
    return (r["hw"], r["M"], r["K"], r["N"], row_context(r.get("op")))


def _scenario_meta(job: LutJob) -> dict | None:
    """The costed scenario, resolved (None for a shapes file)."""
    if job.preset is None:
        return None
    sc = job.scenario if job.scenario is not None else get_scenario("prefill")
    L = get_space(job.preset).seq_len
    if job.scenario_tag is None and job.seq_lens:  # today's prefill at several lengths
        return {**sc.to_dict(), "seq_len": list(job.seq_lens), "unit": "per prefill"}
    return sc.to_dict(L)


# Provenance kept from earlier runs of a resumed Timeloop table (one entry per run).
_RUN_KEYS = (
    "date_utc",
    "n_rows",
    "git_commit",
    "git_dirty",
    "tool_versions",
    "accelergy",
    "mapper_settings",
    "note",
)


def _with_history(meta: dict, path: Path, hw: GemminiConfig) -> dict:
    """A Timeloop table resumed by this run: its earlier runs' provenance (they may have
    used another commit or other tools) as `earlier_runs`."""
    old = meta_path(path)
    if not old.exists():
        return meta
    try:
        prev = json.loads(old.read_text())
    except ValueError:
        return meta
    if isinstance(prev.get(hw.name), dict):  # --out: one entry per config
        prev = prev[hw.name]
    earlier = list(prev.get("earlier_runs", []))
    if prev.get("n_rows"):
        earlier.append({k: prev.get(k) for k in _RUN_KEYS})
    return {**meta, "earlier_runs": earlier} if earlier else meta


def run(job: LutJob) -> list[Path]:
    """Run the job; returns the files written. Resumable and atomic (see module doc): rows
    are written as their work units finish, on either executor. Units that fail (a mapper
    error, a Ray worker that died on every retry) are reported after the others finished;
    rerunning the job retries just them. However the job ends (done, failed units,
    interrupted, SIGTERM), each table is saved with its metadata, whose `partial` says how
    many shapes are missing and why (None when complete)."""
    shapes = job.shapes()
    tables: dict[Path, list[dict]] = {}
    units: list[tuple[GemminiConfig, Path, list]] = []
    chunk = ANALYTICAL_CHUNK if job.backend == "analytical" else 1
    for hw in job.hws:
        path = job.path(hw)
        if path not in tables:
            tables[path] = read_lut(path) if path.exists() else []

        def key(hw_name: str, regime: str, op: str | None, M: int, K: int, N: int) -> tuple:
            ctx = "" if job.backend == "timeloop" else row_context(op)  # see LutJob.shapes
            return (hw_name, regime, ctx, M, K, N)

        done = {
            key(r["hw"], r.get("regime") or "optimal", r.get("op"), r["M"], r["K"], r["N"])
            for r in tables[path]
        }
        todo = [t for t in shapes if key(hw.name, job.regime, *t) not in done]
        log.info(
            "%s: %d of %d rows to cost (%d already in %s)",
            hw.name,
            len(todo),
            len(shapes),
            len(shapes) - len(todo),
            path,
        )
        units += [(hw, path, todo[i : i + chunk]) for i in range(0, len(todo), chunk)]
    if job.backend == "timeloop":  # shape-major: a stopped job leaves whole shapes
        units.sort(key=lambda u: (shapes.index(u[2][0]), job.hws.index(u[0])))
    failed: list[tuple[GemminiConfig, list, BaseException]] = []
    tools = None
    n_todo = sum(len(u[2]) for u in units)
    workroot = Path(job.workdir) if job.workdir else Path(tempfile.mkdtemp(prefix="cosearch-tl-"))
    stopped: str | None = "stopped before its first row"
    ex = make_executor(job.executor, job.jobs, job.ray_address) if units else None
    try:
        with stop.handle_signals():  # SIGTERM saves as Ctrl-C does
            if job.backend == "timeloop" and units:  # where the mapper runs: here or Ray
                run_hws = tuple(dict.fromkeys(u[0] for u in units))
                tools = ex.call(_check_tools, run_hws, workroot, job.tools_note)
            with tqdm(total=n_todo, desc=f"{job.backend} rows ({job.executor})", unit="row") as bar:
                args = [(job, hw, todo, workroot) for hw, _, todo in units]
                for i, rows, err in ex.map_unordered(_cost_unit, args) if ex else ():
                    hw, path, todo = units[i]
                    bar.update(len(todo))
                    if err is not None:
                        failed.append((hw, todo, err))
                        log.warning("%s %s: %s", hw.name, todo[0][1:], _one_line(err))
                        continue
                    tables[path] += rows
                    tables[path].sort(key=_sort_key)
                    write_lut(path, tables[path])  # atomic: a killed job resumes from here
            stopped = f"{len(failed)} rows failed" if failed else None
    except BaseException as e:
        stopped = "interrupted" if isinstance(e, KeyboardInterrupt) else _one_line(e)
        raise
    finally:
        if ex is not None:
            ex.close()
        written = _save(job, tables, shapes, tools, stopped, ran=bool(units))
    if failed:
        hw, todo, err = failed[0]
        n = sum(len(f[1]) for f in failed)
        raise LutJobIncomplete(
            f"{n} of {n_todo} rows failed (first: {hw.name} M,K,N={','.join(map(str, todo[0][1:]))}"
            f": {_one_line(err)}); the other rows are saved in {', '.join(map(str, written))}; "
            "rerun the same command to retry the failed rows"
        )
    return written


def _save(
    job: LutJob,
    tables: dict[Path, list[dict]],
    shapes: list,
    tools: dict | None,
    stopped: str | None,
    ran: bool,
) -> list[Path]:
    """Write every table and its metadata. A Timeloop table this run added nothing to
    keeps its metadata as it was (the tools that made its rows are recorded there)."""

    def partial(n_rows: int) -> str | None:
        if n_rows >= len(shapes):
            return None
        why = stopped or "rows missing"
        return (
            f"{n_rows} of {len(shapes)} shapes ({why}); rerun the same command to add the "
            "missing rows"
        )

    keep_meta = job.backend == "timeloop" and not ran
    written: list[Path] = []
    for hw in job.hws:
        path = job.path(hw)
        tables[path].sort(key=_sort_key)
        write_lut(path, tables[path])
        if job.out is None and not (keep_meta and meta_path(path).exists()):
            hw_rows = [r for r in tables[path] if r["hw"] == hw.name]
            meta = _meta(job, hw, hw_rows, tools, partial(len(hw_rows)))
            if job.backend == "timeloop":
                meta = _with_history(meta, path, hw)
            write_text_atomic(meta_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if path not in written:
            written.append(path)
    if job.out is not None and not (keep_meta and meta_path(job.out).exists()):
        rows = tables[Path(job.out)]
        metas = {}
        for hw in job.hws:
            hw_rows = [r for r in rows if r["hw"] == hw.name]
            metas[hw.name] = _meta(job, hw, hw_rows, tools, partial(len(hw_rows)))
            if job.backend == "timeloop":
                metas[hw.name] = _with_history(metas[hw.name], Path(job.out), hw)
        write_text_atomic(meta_path(job.out), json.dumps(metas, indent=2, sort_keys=True) + "\n")
    return written


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"
