"""One profiling case, isolated: (arch, sequence length, batch, attention) in a subprocess.

Two scenarios: `prefill` times the forward over the whole sequence; `decode` times
generation with a KV cache preallocated to the context (`seq_len`): `steps` jitted
single-token steps (`cosearch.supernet.decode.decode_step`, cache donated) per timed run,
at the last positions of the context, where every step attends the whole cache.

Owns the measurement protocol of the throughput-wall study (baseline memory, timed load,
compile, warm-up, >= 5 timed runs, peak memory) and the parent-side isolation: the case
runs in `python -m cosearch.wall.protocol`, watched by an RSS watchdog (psutil) that
kills it at the memory limit or the timeout, so out-of-memory, timeouts and errors become
records with a reason instead of ending the sweep. The child writes its partial record
after every stage, so a killed case still says how far it got. It must not decide which
cases to run (see `sweep`) nor summarise them (see `report`).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

STATUSES = ("ok", "oom", "timeout", "error", "skipped")
# Messages with which XLA / Python report a failed allocation.
_OOM_MARKERS = (
    "RESOURCE_EXHAUSTED",
    "Out of memory",
    "out of memory",
    "MemoryError",
    "Failed to allocate",
    "std::bad_alloc",
)
POLL_S = 0.02


@dataclass(frozen=True)
class Case:
    """What one isolated run measures. `arch` is an Arch dict (JSON-able)."""

    checkpoint: str
    arch: dict
    seq_len: int
    batch: int = 1
    attention: str = "dense"  # "chunked": the model's query-chunked attention (256 queries)
    logits: str = "all"  # "all": log-probs at every position (the study's forward); "last"
    runs: int = 5
    warmup: int = 1
    seed: int = 0
    scenario: str = "prefill"  # "decode": KV-cache generation with a context of seq_len
    steps: int = 8  # decode: single-token steps per timed run

    def key(self) -> str:
        """Identity of the case in results files (resume skips finished keys)."""
        from cosearch.space import Arch

        a = Arch.from_dict(self.arch).short()
        if self.scenario == "decode":
            return f"{a}|decode|C{self.seq_len}|b{self.batch}|steps{self.steps}"
        return f"{a}|L{self.seq_len}|b{self.batch}|{self.attention}|logits-{self.logits}"


# ----- child side ----------------------------------------------------------------------------
def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so the peak of the forward is not
    the peak of loading. False where unsupported (then the lifetime peak is used)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _write(path: Path, rec: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)


def measure(case: Case, out: Path) -> dict:
    """Run `case` in this process, writing the partial record to `out` after each stage."""
    rec: dict = {"stage": "start", "rss_start_mb": _rss_mb()}
    _write(out, rec)
    t = time.perf_counter()
    import jax
    import jax.numpy as jnp

    from cosearch.config import RunConfig
    from cosearch.space import Arch
    from cosearch.supernet.checkpoint import read_run_config, restore_params
    from cosearch.supernet.extract import extract
    from cosearch.supernet.model import count_params, make_model

    dev = jax.devices()[0]
    rec.update(
        stage="baseline",
        import_s=time.perf_counter() - t,
        rss_baseline_mb=_rss_mb(),
        device=f"{dev.platform}:{dev.device_kind}",
        jax_version=jax.__version__,
    )
    _write(out, rec)

    # Load: restore the supernet and slice out the dense subnet (timed together).
    t = time.perf_counter()
    desc = read_run_config(Path(case.checkpoint))
    config = RunConfig.from_dict(desc["config"])
    space = config.space
    arch = space.validate(Arch.from_dict(case.arch))
    sup = make_model(config, int(desc["vocab_size"]), attention=case.attention)
    params, step = restore_params(Path(case.checkpoint), sup, space)
    model, sub = extract(space, {"params": params}, arch, sup)
    sub = jax.device_put(sub)
    jax.block_until_ready(sub)
    del params
    n_params = count_params(sub)
    rec.update(
        stage="loaded",
        load_s=time.perf_counter() - t,
        rss_loaded_mb=_rss_mb(),
        checkpoint_step=int(step),
        params=n_params,
        backbone_params=space.param_count(arch, embeddings=False),
    )
    _write(out, rec)

    program = _decode_program if case.scenario == "decode" else _prefill_program
    run_once, args, tokens_per_run, extra = program(case, model, sub)
    rec.update(extra)

    # Compile for this shape (and note XLA's planned scratch memory).
    t = time.perf_counter()
    compiled = jax.jit(run_once, donate_argnums=_DONATE[case.scenario]).lower(*args).compile()
    rec.update(stage="compiled", compile_s=time.perf_counter() - t)
    try:
        ma = compiled.memory_analysis()
        rec["xla_temp_mb"] = ma.temp_size_in_bytes / 2**20
        rec["xla_output_mb"] = ma.output_size_in_bytes / 2**20
    except Exception:  # not every backend reports it
        pass
    _write(out, rec)

    # Warm-up, then the timed runs; the peak-RSS mark is reset so it covers the runs.
    reset = _reset_peak_rss()
    t = time.perf_counter()
    _, args, _ = _timed_runs(compiled, args, case.scenario, case.warmup)
    rec.update(stage="warm", warmup_s=time.perf_counter() - t)
    _write(out, rec)
    res, args, times = _timed_runs(compiled, args, case.scenario, case.runs)
    prob_sum = float(sum(jnp.exp(b[0, -1]).sum() for b in res))
    med = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [med, med, med]
    rec.update(
        stage="done",
        times_s=times,
        median_s=med,
        min_s=min(times),
        max_s=max(times),
        iqr_s=q[2] - q[0],
        tokens_per_s=tokens_per_run / med,
        peak_rss_mb=_peak_rss_mb(),
        peak_reset=reset,
        prob_sum_last=prob_sum,
        load_avg_1m=os.getloadavg()[0],  # timings on a shared machine: how shared it was
    )
    rec["tokens_per_s_per_M"] = rec["tokens_per_s"] / (n_params / 1e6)
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            rec["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    _write(out, rec)
    return rec


_DONATE = {"prefill": (), "decode": (1,)}  # decode: the cache is updated in place


def _prefill_program(case: Case, model, sub):
    """(forward(params, tokens), its arguments, tokens per call, record fields)."""
    import jax
    import jax.numpy as jnp

    last = case.logits == "last"

    def forward(p, x):
        if not last:
            return model.apply(p, x)
        h = model.apply(p, x, method=lambda mod, t: mod.hidden(t))
        return model.apply(p, h[:, -1:], method=lambda mod, hh: mod.embedding.log_prob_blocks(hh))

    tokens = jax.random.randint(
        jax.random.key(case.seed), (case.batch, case.seq_len), 0, model.vocab, dtype=jnp.int32
    )
    return forward, (sub, tokens), case.batch * case.seq_len, {}


def _decode_program(case: Case, model, sub):
    """(`steps` decode steps (params, cache, tokens) -> (log-probs (B, 1, .), cache), its
    arguments, tokens per call, record fields). The steps run at the context's last
    positions, so each attends (nearly) the whole cache; the cache is zeros, which costs
    what a prefilled one does (the step's shapes do not depend on its contents)."""
    import jax
    import jax.numpy as jnp

    from cosearch.supernet.decode import cache_bytes, decode_step, init_cache

    if case.steps > case.seq_len:
        raise ValueError(f"{case.steps} decode steps do not fit a context of {case.seq_len}")
    start = case.seq_len - case.steps
    step = decode_step  # inlined into the one jit around all the steps

    def steps(p, cache, tokens):
        def body(c, pos):
            blocks, c = step(model, p, c, tokens[:, pos - start], pos)
            return c, None

        cache, _ = jax.lax.scan(body, cache, start + jnp.arange(case.steps - 1))
        blocks, cache = step(model, p, cache, tokens[:, -1], jnp.int32(case.seq_len - 1))
        return [b[:, None] for b in blocks], cache

    tokens = jax.random.randint(
        jax.random.key(case.seed), (case.batch, case.steps), 0, model.vocab, dtype=jnp.int32
    )
    cache = init_cache(model, case.batch, case.seq_len)
    jax.block_until_ready(cache)
    extra = {
        "kv_cache_mb": cache_bytes(model, case.batch, case.seq_len) / 2**20,
        "decode_steps": case.steps,
        "rss_cache_mb": _rss_mb(),
    }
    return steps, (sub, cache, tokens), case.batch * case.steps, extra


def _timed_runs(compiled, args: tuple, scenario: str, n: int):
    """`n` calls of `compiled`, each timed; returns (the last outputs, the arguments of the
    next call, the times). Each call's outputs are released before the next call starts,
    so that the peak memory is one forward's, not two (the L x vocab log-probabilities of
    the previous call would otherwise stay alive during the next)."""
    res, times = None, []
    for _ in range(n):
        res = None  # drop the previous outputs before computing the next ones
        t = time.perf_counter()
        res, args = _call(compiled, args, scenario)
        times.append(time.perf_counter() - t)
    return res, args, times


def _call(compiled, args: tuple, scenario: str):
    """Run once to completion; returns (outputs, the arguments of the next call: the
    updated cache replaces the donated one)."""
    import jax

    res = jax.block_until_ready(compiled(*args))
    if scenario == "decode":
        res, cache = res
        args = (args[0], cache, args[2])
    return res, args


def child_main(argv: list[str]) -> int:
    """`python -m cosearch.wall.protocol CASE.json OUT.json` (run by `run_isolated`)."""
    case_path, out_path = Path(argv[0]), Path(argv[1])
    case = Case(**json.loads(case_path.read_text()))
    try:
        measure(case, out_path)
    except BaseException as e:  # record why, then fail: the parent classifies
        rec = json.loads(out_path.read_text()) if out_path.exists() else {}
        msg = f"{type(e).__name__}: {e}"
        rec.update(error=msg[-2000:], traceback=traceback.format_exc()[-4000:])
        _write(out_path, rec)
        return 1
    return 0


# ----- parent side ---------------------------------------------------------------------------
def is_oom_message(msg: str) -> bool:
    return any(m in msg for m in _OOM_MARKERS)


def run_isolated(
    case: Case, *, mem_limit_gb: float | None, timeout_s: float, log_dir: Path | None = None
) -> dict:
    """Run `case` in a fresh Python process under an RSS watchdog; return its record with
    `status` (ok, oom, timeout, error) and `reason`. Never raises for a failing case."""
    limit = None if mem_limit_gb is None else mem_limit_gb * 2**30
    env = dict(os.environ)
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # GPU: peak = what is used
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="wall-case-") as tmp:
        case_path, out_path = Path(tmp) / "case.json", Path(tmp) / "out.json"
        case_path.write_text(json.dumps(asdict(case)))
        log_path = (Path(log_dir) / (_safe(case.key()) + ".log")) if log_dir else Path(tmp) / "log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        killed, max_rss = None, 0
        with log_path.open("w") as log_f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cosearch.wall.protocol", str(case_path), str(out_path)],
                stdout=log_f,
                stderr=subprocess.STDOUT,
                env=env,
            )
            ps = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:  # the child only: XLA runs in threads, and scanning /proc for
                    rss = ps.memory_info().rss  # children would steal CPU from the timing
                except psutil.Error:
                    rss = 0
                max_rss = max(max_rss, rss)
                if limit is not None and rss > limit:
                    killed = "oom"
                elif time.perf_counter() - t0 > timeout_s:
                    killed = "timeout"
                if killed:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(POLL_S)
        wall = time.perf_counter() - t0
        rec = {}
        if out_path.exists():
            try:
                rec = json.loads(out_path.read_text())
            except json.JSONDecodeError:
                rec = {}
        tail = log_path.read_text()[-1500:] if log_path.exists() else ""
    rec.update(
        case_wall_s=wall,
        watchdog_max_rss_mb=max_rss / 2**20,
        mem_limit_gb=mem_limit_gb,
        timeout_s=timeout_s,
    )
    stage = rec.get("stage", "start")
    peak = max(rec.get("peak_rss_mb", 0.0), rec.get("peak_device_mb", 0.0))
    if killed == "oom":
        status = "oom"
        reason = (
            f"RSS {max_rss / 2**30:.2f} GiB passed the {mem_limit_gb} GiB limit "
            f"after stage '{stage}'"
        )
    elif killed == "timeout":
        status, reason = "timeout", f"over {timeout_s:.0f} s (after stage '{stage}')"
    elif proc.returncode == 0 and stage == "done":
        if limit is not None and peak * 2**20 > limit:  # a spike between two polls
            status = "oom"
            reason = f"peak {peak / 1024:.2f} GiB above the {mem_limit_gb} GiB limit"
        else:
            status, reason = "ok", ""
    else:
        msg = rec.get("error") or tail.strip().splitlines()[-1:] or [""]
        msg = msg if isinstance(msg, str) else msg[0]
        if proc.returncode == -9 or is_oom_message(msg + tail):
            status = "oom"
            reason = f"allocation failed in stage '{stage}': {msg[-300:]}"
        else:
            status = "error"
            reason = f"exit {proc.returncode} in stage '{stage}': {msg[-300:]}"
    rec.update(status=status, reason=reason)
    rec.pop("traceback", None)
    return rec


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in key)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
