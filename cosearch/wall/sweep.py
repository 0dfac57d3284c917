"""The throughput-wall sweep: which cases to run, in what order, and resuming.

Owns the parsing and checking of the sweep's inputs (sequence lengths, the `--archs` spec,
attention implementations, limits, the output directory), the case order (shortest lengths
first, so a cut-short sweep still covers every model; for `decode`, contexts then batch
sizes) and resume (finished keys are
skipped; the files are `results`'). Each case runs isolated through
`protocol.run_isolated`; a failing case is a record, never the end of the sweep. It must
not measure anything itself.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from cosearch.errors import UserError
from cosearch.parsing import names, positive_ints, split_top_level
from cosearch.runinfo import check_output_dir, git_commit, write_json_atomic
from cosearch.space import Arch, SearchSpace, arch_from_arg
from cosearch.wall.protocol import Case, run_isolated
from cosearch.wall.results import FAILED, RUN_JSON, append_record, latest, read_results

log = logging.getLogger(__name__)

ATTENTION_IMPLS = ("dense", "chunked")
SCENARIOS = ("prefill", "decode")


# ----- inputs ------------------------------------------------------------------------------
def parse_seq(spec: str | Iterable) -> tuple[int, ...]:
    """'128,512,1024' -> (128, 512, 1024), sorted, unique; anything else a clear error."""
    return positive_ints(spec, "--seq", "128,512,1024")


def parse_attention(spec: str | Iterable[str]) -> tuple[str, ...]:
    return names(spec if isinstance(spec, str) else ",".join(spec), "--attention", ATTENTION_IMPLS)


@dataclass(frozen=True)
class Model:
    """One arch of the sweep and where it came from."""

    label: str
    arch: Arch
    note: str = ""


def pareto_archs(space: SearchSpace, path: str | Path, max_n: int = 3) -> list[Model]:
    """Distinct archs of a search run's pareto.json front, ordered by perplexity; at most
    `max_n`, evenly spaced along the front (both ends kept)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"pareto file '{path}' not found; give the pareto.json of a "
            "`python -m cosearch.search` run"
        )
    try:
        front = json.loads(p.read_text())["front"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(
            f"'{path}' is not a search run's pareto.json (needs a 'front' list of evaluations): {e}"
        ) from None
    seen: dict[Arch, float] = {}
    for e in sorted(front, key=lambda e: e.get("ppl", 0.0)):
        a = space.validate(Arch.from_dict(e["arch"]))
        seen.setdefault(a, float(e.get("ppl", float("nan"))))
    archs = list(seen.items())
    if len(archs) > max_n:
        idx = sorted({round(i * (len(archs) - 1) / max(1, max_n - 1)) for i in range(max_n)})
        archs = [archs[i] for i in idx]
    return [
        Model(f"pareto{i + 1}", a, f"front of {p.name}, search ppl {ppl:.1f}")
        for i, (a, ppl) in enumerate(archs)
    ]


def resolve_archs(
    space: SearchSpace, spec: str, *, seed: int = 0, pareto_max: int = 3
) -> list[Model]:
    """'largest,smallest,random:5,pareto:FILE' (or a JSON file / inline JSON arch) ->
    models, duplicates dropped. Archs outside the space fail naming the field."""
    models: list[Model] = []
    rng = random.Random(f"{seed}:profile_wall")
    for item in split_top_level(spec):
        if item.startswith("random:"):
            n = item.split(":", 1)[1]
            if not n.isdigit() or int(n) <= 0:
                raise UserError(f"--archs '{item}': random:N needs a positive integer N")
            models += [
                Model(f"random{i + 1}", space.sample(rng), f"uniform sample, seed {seed}")
                for i in range(int(n))
            ]
        elif item.startswith("pareto:"):
            models += pareto_archs(space, item.split(":", 1)[1], pareto_max)
        elif item in ("largest", "smallest"):
            models.append(Model(item, arch_from_arg(space, item)))
        else:
            models.append(Model(f"arch{len(models) + 1}", arch_from_arg(space, item), "given"))
    out, seen = [], set()
    for m in models:
        if m.arch not in seen:
            seen.add(m.arch)
            out.append(m)
    if not out:
        raise ValueError("no architectures selected; e.g. --archs largest,smallest,random:3")
    return out


def check_checkpoint(checkpoint: str | Path) -> dict:
    """The run's config.json, after checking the directory holds a checkpoint at all."""
    from cosearch.supernet.checkpoint import CKPT_DIR, CheckpointError, read_run_config

    path = Path(checkpoint)
    if not path.is_dir():
        raise FileNotFoundError(
            f"checkpoint directory '{checkpoint}' does not exist; train "
            "one with `python -m cosearch.train_supernet --workdir DIR`"
        )
    desc = read_run_config(path)
    ck = path / CKPT_DIR
    if not ck.is_dir() or not any(p.name.isdigit() for p in ck.iterdir()):
        raise CheckpointError(
            f"no saved step under '{ck}'; train (or finish training) with "
            "`python -m cosearch.train_supernet --workdir DIR --resume`"
        )
    if "vocab_size" not in desc:
        raise CheckpointError(
            f"'{path}/config.json' lacks vocab_size; retrain with the current cosearch"
        )
    return desc


def machine_info() -> dict:
    vm = psutil.virtual_memory()
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "mem_total_gb": round(vm.total / 2**30, 1),
        "python": platform.python_version(),
    }


# ----- the sweep ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepOptions:
    archs: str = "largest,smallest"
    seq: tuple[int, ...] = (128, 512, 1024, 2048)
    attention: tuple[str, ...] = ATTENTION_IMPLS
    batch: int = 1
    mem_limit_gb: float | None = 4.0
    timeout_s: float = 120.0
    runs: int = 5
    warmup: int = 1
    logits: str = "all"
    skip_after_fail: bool = True
    retry_failed: bool = False
    pareto_max: int = 3
    seed: int = 0
    hw: tuple[str, ...] = ("gemmini-64k-256k", "gemmini-256k-64k")
    modelled: bool = True
    report: bool = True
    # "decode": KV-cache generation; `seq` are then contexts, and every batch size of
    # `batches` is a case (`batch` is prefill's)
    scenario: str = "prefill"
    batches: tuple[int, ...] = (1,)
    steps: int = 8  # decode: single-token steps per timed run

    def case_batches(self) -> tuple[int, ...]:
        return tuple(self.batches) if self.scenario == "decode" else (self.batch,)


def plan(models: list[Model], opts: SweepOptions, checkpoint: str) -> list[tuple[Model, Case]]:
    """Cases in run order: by length (context), then model, then attention (decode: batch
    size; decode has no attention choice: one token against the cache)."""
    decode = opts.scenario == "decode"
    return [
        (
            m,
            Case(
                str(checkpoint),
                m.arch.to_dict(),
                L,
                b,
                impl,
                opts.logits,
                opts.runs,
                opts.warmup,
                opts.seed,
                opts.scenario,
                opts.steps,
            ),
        )
        for L in opts.seq
        for m in models
        for impl in (("dense",) if decode else opts.attention)
        for b in opts.case_batches()
    ]


def planned_cache_mb(arch: Arch, head_dim: int, batch: int, context: int) -> float:
    """MiB of the float32 KV cache `decode.init_cache` allocates for `arch`'s dense model:
    [layers, 2, batch, widest layer's heads, context, head_dim] (`decode.cache_shape`)."""
    return arch.n_layers * 2 * batch * max(arch.heads) * context * head_dim * 4 / 2**20


def _group(rec: dict) -> tuple:
    """Cases of one model whose memory and time grow with length and batch only."""
    return (rec["arch_id"], rec["attention"], rec["logits"], rec.get("scenario", "prefill"))


def predicted_case_s(
    ok: list[dict], seq_len: int, runs: int, warmup: int, max_slope: float = 2.0
) -> float:
    """Wall time of a case at `seq_len` extrapolated from the working shorter ones of the
    same model: the forward grows with the local log-log slope of the last two (clipped to
    [min(1, max_slope), max_slope]; max_slope with one point), load and compile as
    measured at the longest. max_slope: 2 for a prefill (quadratic attention), 1 for a
    decode step (one token against a cache linear in the context)."""
    ok = sorted(ok, key=lambda r: r["seq_len"])
    prev = ok[-1]
    b = max_slope
    if len(ok) >= 2:
        a = ok[-2]
        b = math.log(prev["median_s"] / a["median_s"]) / math.log(prev["seq_len"] / a["seq_len"])
        b = min(max(b, min(1.0, max_slope)), max_slope)
    fixed = sum(prev.get(k) or 0.0 for k in ("import_s", "load_s", "compile_s"))
    return fixed + (runs + warmup) * prev["median_s"] * (seq_len / prev["seq_len"]) ** b


def _skip_reason(meta: dict, records: Iterable[dict], opts: SweepOptions) -> str | None:
    """Why a case need not run: a shorter length (or, at most as long, a smaller batch) of
    the same model already ran out of memory or time, or the quadratic extrapolation of the
    longest working one at this batch says the case cannot finish within the timeout. A
    decode case whose planned KV cache alone (`kv_cache_mb`) reaches the memory limit is
    out of memory before it runs."""
    cache = meta.get("kv_cache_mb")
    if cache is not None and opts.mem_limit_gb and cache >= opts.mem_limit_gb * 1024:
        return (
            f"oom planned: the KV cache alone is {cache:.0f} MiB, at least the "
            f"{opts.mem_limit_gb:g} GiB limit"
        )
    L, B = meta["seq_len"], meta["batch"]
    smaller = [
        r
        for r in records
        if _group(r) == _group(meta)
        and r["seq_len"] <= L
        and r["batch"] <= B
        and (r["seq_len"], r["batch"]) != (L, B)
    ]
    fail = next((r for r in smaller if r["status"] in ("oom", "timeout")), None)
    if fail is not None:
        at = f"L={fail['seq_len']}" + (f", batch {fail['batch']}" if fail["batch"] != B else "")
        return (
            f"{fail['status']} at {at}: longer sequences and larger batches need at least "
            "as much memory and time"
        )
    same = [r for r in smaller if r["batch"] == B]
    ok = [r for r in same if r["status"] == "ok"]
    if ok:
        slope = 1.0 if meta.get("scenario") == "decode" else 2.0
        t = predicted_case_s(ok, meta["seq_len"], opts.runs, opts.warmup, slope)
        if t > opts.timeout_s:
            prev = max(ok, key=lambda r: r["seq_len"])
            return (
                f"predicted {t:.0f} s > the {opts.timeout_s:.0f} s timeout (extrapolated "
                f"from {1e3 * prev['median_s']:.0f} ms per forward at L={prev['seq_len']})"
            )
    return None


def check_options(opts: SweepOptions) -> None:
    """Every option, before anything runs (a bad --hw must not wait for the whole sweep)."""
    checks = (
        ("--batch", opts.batch, opts.batch >= 1, "a positive integer"),
        ("--runs", opts.runs, opts.runs >= 5, "at least 5 (the protocol's timed runs)"),
        ("--warmup", opts.warmup, opts.warmup >= 0, "0 or more"),
        ("--timeout-s", opts.timeout_s, opts.timeout_s > 0, "positive"),
        ("--pareto-max", opts.pareto_max, opts.pareto_max >= 1, "a positive integer"),
        ("--logits", opts.logits, opts.logits in ("all", "last"), "'all' or 'last'"),
        ("--scenario", opts.scenario, opts.scenario in SCENARIOS, "'prefill' or 'decode'"),
        ("--batches", opts.batches, all(b >= 1 for b in opts.batches), "positive integers"),
        ("--decode-steps", opts.steps, opts.steps >= 1, "a positive integer"),
    )
    for flag, value, ok, what in checks:
        if not ok:
            raise UserError(f"{flag} must be {what}, got {value}")
    if opts.mem_limit_gb is not None and not opts.mem_limit_gb > 0:
        raise UserError(f"--mem-limit-gb must be positive (0 = no limit), got {opts.mem_limit_gb}")
    parse_attention(opts.attention)
    parse_seq(opts.seq)
    if opts.scenario == "decode" and min(opts.seq) < opts.steps:
        raise UserError(
            f"--contexts {min(opts.seq)} is shorter than the {opts.steps} decode steps timed "
            "per run; give longer contexts or a smaller --decode-steps"
        )
    if opts.modelled:
        from cosearch.hw.gemmini import get_hw

        for name in opts.hw:
            get_hw(name)


def run(
    checkpoint: str | Path,
    out: str | Path,
    opts: SweepOptions,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict:
    """Run (or resume) the sweep into `out`; return a summary with counts and the report."""
    check_options(opts)
    check_output_dir(out)
    desc = check_checkpoint(checkpoint)
    from cosearch.config import RunConfig

    space = RunConfig.from_dict(desc["config"]).space
    models = resolve_archs(space, opts.archs, seed=opts.seed, pareto_max=opts.pareto_max)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        out / RUN_JSON,
        {
            "checkpoint": Path(checkpoint).name,
            "space": space.name,
            "vocab_size": desc["vocab_size"],
            "options": {**opts.__dict__},
            "models": [
                {
                    "label": m.label,
                    "arch_id": m.arch.short(),
                    "arch": m.arch.to_dict(),
                    "note": m.note,
                }
                for m in models
            ],
            "machine": machine_info(),
            "git_commit": git_commit(),
        },
    )
    done = latest(read_results(out))
    cases = plan(models, opts, str(checkpoint))
    t0 = time.perf_counter()
    counts = {"run": 0, "resumed": 0, **{s: 0 for s in ("ok", *FAILED)}}
    it = progress(cases) if progress else cases
    for m, case in it:
        key = case.key()
        prev = done.get(key)
        if prev is not None and (prev["status"] == "ok" or not opts.retry_failed):
            counts["resumed"] += 1
            continue
        meta = {
            "key": key,
            "label": m.label,
            "arch_id": m.arch.short(),
            "arch": m.arch.to_dict(),
            "seq_len": case.seq_len,
            "batch": case.batch,
            "attention": case.attention,
            "logits": case.logits,
            "scenario": case.scenario,
            "finished_at": None,
        }
        if case.scenario == "decode":
            meta["kv_cache_mb"] = planned_cache_mb(m.arch, space.head_dim, case.batch, case.seq_len)
        reason = _skip_reason(meta, done.values(), opts) if opts.skip_after_fail else None
        if reason is not None:
            rec = {
                **meta,
                "status": "skipped",
                "reason": reason,
                "mem_limit_gb": opts.mem_limit_gb,
                "timeout_s": opts.timeout_s,
            }
        else:
            log.debug("case %s", key)
            rec = {
                **meta,
                **run_isolated(
                    case,
                    mem_limit_gb=opts.mem_limit_gb,
                    timeout_s=opts.timeout_s,
                    log_dir=out / "logs",
                ),
            }
            counts["run"] += 1
            if rec["status"] == "ok":  # keep logs of failures only
                from cosearch.wall.protocol import _safe

                (out / "logs" / (_safe(key) + ".log")).unlink(missing_ok=True)
        rec["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        counts[rec["status"]] += 1
        done[key] = rec
        append_record(out, rec)
        if rec["status"] != "ok":
            log.info("%s: %s (%s)", key, rec["status"], rec["reason"])
    elapsed = time.perf_counter() - t0
    summary = {"out": str(out), "cases": len(cases), "elapsed_s": elapsed, **counts}
    if opts.modelled and opts.scenario == "prefill":  # the Gemmini view models prefill
        from cosearch.wall.modelled import write_modelled

        write_modelled(out, space, models, opts.seq, opts.hw)
    if opts.report:
        from cosearch.wall.report import write_report

        summary["report"] = str(write_report(out))
    return summary
