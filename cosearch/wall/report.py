"""Summaries of a wall sweep: scalability classes, success rates, scaling fits, plots, tables.

Owns the study's class function (High >= 1024 tokens, Medium 512-1023, Low 128-511, Very
low < 128, Failed), the seed study's reference numbers, log-log scaling exponents of time
and memory in sequence length, the predicted out-of-memory length, and the files written
next to the results: `tables.md` and four PNGs. For a `decode` sweep (KV-cache generation)
it gives, per model and batch size, the longest context that runs and whether the wall
there is memory (the cache) or time, with `decode_*.png`. Reads only `results.jsonl`,
`run.json` and `modelled.csv`; it must not run anything, so it can be rerun on a finished
sweep.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from cosearch.runinfo import write_text_atomic
from cosearch.wall.results import latest, read_modelled, read_results, read_run

# The seed study ("Transformer Scalability Crisis"): share of 118 models that ran at a length.
STUDY_SUCCESS = {128: None, 512: 0.881, 1024: 0.449, 2048: 0.0}
STUDY_EFFICIENCY = {"compressed": 649.2, "large generative": 12.5}  # tokens/s per M params
CLASS_BOUNDS = (("High", 1024), ("Medium", 512), ("Low", 128))
CLASSES = ("High", "Medium", "Low", "Very low", "Failed")
TABLES_MD = "tables.md"


def classify(longest_ok: int | None) -> str:
    """The study's scalability class from a model's longest working sequence length."""
    if longest_ok is None or longest_ok <= 0:
        return "Failed"
    for name, lo in CLASS_BOUNDS:
        if longest_ok >= lo:
            return name
    return "Very low"


def fit_exponent(xs, ys) -> float | None:
    """Slope b of log y = a + b log x (least squares); None with < 2 usable points."""
    pts = [(x, y) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def _fit_power(xs, ys) -> tuple[float, float] | None:
    pts = [(x, y) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    if len({x for x, _ in pts}) < 2:
        return None
    b, a = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)
    return float(math.exp(a)), float(b)


def activation_mb(r: dict) -> float | None:
    """Memory the forward adds over the loaded model: peak (device, else host RSS) minus
    the RSS after loading."""
    if r.get("peak_device_mb"):
        return r["peak_device_mb"]
    if r.get("peak_rss_mb") is None or r.get("rss_loaded_mb") is None:
        return None
    return max(r["peak_rss_mb"] - r["rss_loaded_mb"], 0.0)


# ----- summaries -----------------------------------------------------------------------------
def success_rates(records: list[dict]) -> dict[str, dict[int, tuple[int, int]]]:
    """attention -> length -> (models that worked, models tried)."""
    out: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in records:
        cell = out[r["attention"]][r["seq_len"]]
        cell[0] += r["status"] == "ok"
        cell[1] += 1
    return {a: {L: tuple(v) for L, v in sorted(d.items())} for a, d in out.items()}


def model_summaries(records: list[dict], fit_min_len: int = 1024) -> list[dict]:
    """One row per (model, attention): class, wall, efficiency and scaling exponents."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["label"], r["arch_id"], r["attention"], r["batch"], r["logits"])].append(r)
    rows = []
    for (label, arch_id, att, batch, logits), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seq_len"])
        ok = [r for r in rs if r["status"] == "ok"]
        fails = [r for r in rs if r["status"] != "ok"]
        longest = max((r["seq_len"] for r in ok), default=None)
        first_fail = next(
            (r for r in fails if longest is None or r["seq_len"] > longest),
            fails[0] if fails else None,
        )
        big = [r for r in ok if r["seq_len"] >= fit_min_len]
        at = {r["seq_len"]: r for r in ok}
        row = {
            "label": label,
            "arch_id": arch_id,
            "attention": att,
            "batch": batch,
            "logits": logits,
            "params": next((r["params"] for r in rs if r.get("params")), None),
            "longest_ok": longest,
            "class": classify(longest),
            "first_fail": None if first_fail is None else first_fail["seq_len"],
            "first_fail_status": None if first_fail is None else first_fail["status"],
            "first_fail_reason": None if first_fail is None else first_fail["reason"],
            "tokens_per_s_512": at.get(512, {}).get("tokens_per_s"),
            "tokens_per_s_per_M_512": at.get(512, {}).get("tokens_per_s_per_M"),
            "peak_tokens_per_s": max((r["tokens_per_s"] for r in ok), default=None),
            "time_exp_all": fit_exponent([r["seq_len"] for r in ok], [r["median_s"] for r in ok]),
            "time_exp_last": fit_exponent(
                [r["seq_len"] for r in ok[-2:]], [r["median_s"] for r in ok[-2:]]
            ),
            "time_exp_long": fit_exponent(
                [r["seq_len"] for r in big], [r["median_s"] for r in big]
            ),
            "mem_exp_long": fit_exponent(
                [r["seq_len"] for r in big], [activation_mb(r) for r in big]
            ),
            "xla_temp_exp_long": fit_exponent(
                [r["seq_len"] for r in big], [r.get("xla_temp_mb") for r in big]
            ),
            "mem_at": {r["seq_len"]: r.get("peak_rss_mb") for r in ok},
            "predicted_oom_len": _predicted_oom(ok, rs),
        }
        rows.append(row)
    order = {"dense": 0, "chunked": 1}
    return sorted(rows, key=lambda r: (order.get(r["attention"], 9), r["label"]))


def _predicted_oom(ok: list[dict], rs: list[dict]) -> float | None:
    """Length at which the power-law fit of activation memory (top 3 working lengths)
    plus the loaded model reaches the memory limit."""
    limit = next((r.get("mem_limit_gb") for r in rs if r.get("mem_limit_gb")), None)
    top = ok[-3:]
    # only where the forward's memory is well above the runtime's noise (5% of the limit)
    if limit is None or len(top) < 3 or (activation_mb(top[-1]) or 0) < 0.05 * limit * 1024:
        return None
    fit = _fit_power([r["seq_len"] for r in top], [activation_mb(r) for r in top])
    if fit is None or not 0.5 <= fit[1] <= 3.0:
        return None
    a, b = fit
    base = top[-1].get("rss_loaded_mb") or 0.0
    room = limit * 1024 - base
    return (room / a) ** (1 / b) if room > 0 else None


# ----- plots ---------------------------------------------------------------------------------
def _styles(records: list[dict]):
    labels = sorted({r["label"] for r in records})
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
    return colors, {"dense": "-", "chunked": "--"}


def plot_all(out: Path, records: list[dict], modelled: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors, ls = _styles(records)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["label"], r["attention"])].append(r)
    limit = next((r.get("mem_limit_gb") for r in records if r.get("mem_limit_gb")), None)
    paths = []
    for name, field, ylabel in (
        ("tokens_per_s", "tokens_per_s", "tokens/s (batch 1)"),
        ("peak_memory", "peak_rss_mb", "peak memory (MiB)"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plotted = False
        for (label, att), rs in sorted(groups.items()):
            rs = sorted(rs, key=lambda r: r["seq_len"])
            ok = [r for r in rs if r["status"] == "ok"]
            key = (
                "peak_device_mb"
                if field == "peak_rss_mb" and ok and ok[0].get("peak_device_mb")
                else field
            )
            ax.plot(
                [r["seq_len"] for r in ok],
                [r[key] for r in ok],
                ls[att],
                marker="o",
                color=colors[label],
                label=f"{label} {att}",
            )
            plotted = plotted or bool(ok)
            bad = [r for r in rs if r["status"] in ("oom", "timeout", "error")]
            if bad and ok:
                ax.plot(
                    [r["seq_len"] for r in bad],
                    [
                        limit * 1024
                        if field == "peak_rss_mb" and limit and r["status"] == "oom"
                        else ok[-1][key]
                        for r in bad
                    ],
                    "x",
                    color=colors[label],
                    markersize=10,
                )
        if field == "peak_rss_mb" and limit:
            ax.axhline(limit * 1024, color="k", lw=0.8, ls=":", label=f"limit {limit} GiB")
        if plotted:  # nothing worked: log axes would have no range
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs length (x: failure; OOM drawn at the limit)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for att, d in success_rates(records).items():
        Ls = sorted(d)
        ax.plot(
            Ls,
            [100 * d[L][0] / d[L][1] for L in Ls],
            ls[att],
            marker="o",
            label=f"ours, {att} attention",
        )
    sx = [L for L, v in STUDY_SUCCESS.items() if v is not None]
    ax.plot(sx, [100 * STUDY_SUCCESS[L] for L in sx], "ks", label="seed study (118 HF models)")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-5, 105)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("models that run (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "success_rate.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    if modelled:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        hws = sorted({r["hw"] for r in modelled})
        hw_ls = {hw: s for hw, s in zip(hws, ("-", "--", ":", "-."))}
        mcolors = {
            lab: f"C{i % 10}" for i, lab in enumerate(sorted({r["label"] for r in modelled}))
        }
        for label, hw in sorted({(r["label"], r["hw"]) for r in modelled}):
            rs = sorted(
                (r for r in modelled if r["label"] == label and r["hw"] == hw),
                key=lambda r: r["seq_len"],
            )
            x = [r["seq_len"] for r in rs]
            kw = {"color": mcolors[label], "ls": hw_ls.get(hw, "-"), "marker": "."}
            a1.plot(x, [r["latency_ms"] for r in rs], label=f"{label} {hw}", **kw)
            a2.plot(x, [100 * r["attn_latency_share"] for r in rs], **kw)
        for ax in (a1, a2):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length (tokens)")
            ax.grid(True, which="both", alpha=0.3)
        a1.set_yscale("log")
        a1.set_ylabel("modelled prefill latency on Gemmini (ms)")
        a2.set_ylabel("attention share of latency (%)")
        a1.legend(fontsize=7)
        fig.suptitle("Modelled view (Gemmini cost model, end to end incl. LM head)")
        fig.tight_layout()
        paths.append(out / "modelled.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


# ----- markdown --------------------------------------------------------------------------------
def _f(v, fmt: str = ".3g", none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def _summary_rows(summ: list[dict], row, fail_line) -> list[str]:
    """A table row per summary, `row(s, first_failure)`, then a "First failure reasons"
    list, `fail_line(s)`, for the summaries that have a reason."""
    lines = []
    for s in summ:
        ff = f"{s['first_fail']} ({s['first_fail_status']})" if s["first_fail"] else "none"
        lines.append(row(s, ff))
    fails = [s for s in summ if s["first_fail_reason"]]
    if fails:
        lines += ["", "First failure reasons:", ""]
        lines += [fail_line(s) for s in fails]
    return lines


def _prefill_row(s: dict, ff: str) -> str:
    return (
        f"| {s['label']} | `{s['arch_id']}` | {_f(s['params'] and s['params'] / 1e6)} | "
        f"{s['attention']} | {_f(s['longest_ok'], 'd')} | {s['class']} | {ff} | "
        f"{_f(s['tokens_per_s_512'], '.0f')} | {_f(s['tokens_per_s_per_M_512'], '.0f')} | "
        f"{_f(s['time_exp_all'], '.2f')} / {_f(s['time_exp_long'], '.2f')} / "
        f"{_f(s['time_exp_last'], '.2f')} | "
        f"{_f(s['mem_exp_long'], '.2f')} | {_f(s['xla_temp_exp_long'], '.2f')} | "
        f"{_f(s['predicted_oom_len'], '.0f')} |"
    )


def _prefill_fail(s: dict) -> str:
    return f"- {s['label']} {s['attention']} at {s['first_fail']}: {s['first_fail_reason']}"


def _decode_row(s: dict, ff: str) -> str:
    tps = s["tokens_per_s"]
    return (
        f"| {s['label']} | `{s['arch_id']}` | {s['batch']} | {_f(s['longest_ok'], 'd')} | "
        f"{ff} | {s['wall']} | {_f(tps.get(128), '.0f')} | "
        f"{_f(tps.get(s['longest_ok']), '.0f')} | {_f(s['peak_rss_mb'], '.0f')} | "
        f"{_f(s['forward_mb'], '.0f')} | {_f(s['kv_cache_mb'], '.0f')} | "
        f"{_f(s['time_exp'], '.2f')} |"
    )


def _decode_fail(s: dict) -> str:
    return (
        f"- {s['label']} batch {s['batch']} at context {s['first_fail']}: {s['first_fail_reason']}"
    )


def markdown(records: list[dict], run: dict, modelled: list[dict]) -> str:
    lines = ["# Throughput-wall sweep: tables", ""]
    opts = run.get("options", {})
    m = run.get("machine", {})
    device = next((r["device"] for r in records if r.get("device")), "?")
    lines += [
        f"- checkpoint: `{run.get('checkpoint')}` (space `{run.get('space')}`, vocab "
        f"{run.get('vocab_size')}), commit {str(run.get('git_commit', ''))[:10]}",
        f"- machine: {m.get('cpu_count')} CPUs, {m.get('mem_total_gb')} GiB RAM, "
        f"{m.get('platform')}; device {device}",
        f"- memory limit {opts.get('mem_limit_gb')} GiB (RSS watchdog), timeout "
        f"{opts.get('timeout_s')} s per case, batch {opts.get('batch')}, {opts.get('runs')} timed "
        f"runs after {opts.get('warmup')} warm-up, log-probs at {opts.get('logits')} positions",
        f"- cases: {len(records)}; wall time of the cases "
        f"{sum(r.get('case_wall_s', 0) for r in records) / 60:.1f} min",
        "",
        "## Success rate per length",
        "",
    ]
    sr = success_rates(records)
    Ls = sorted({r["seq_len"] for r in records} | set(opts.get("seq") or ()))
    atts = list(sr)
    n_models = len(run.get("models") or ()) or None
    lines += [
        "Worked / cases recorded (skipped = not run: a shorter length failed, or the time "
        "extrapolated from shorter lengths passes the timeout; they count as failures, as "
        "in the study). 'not run' = planned but no record (an unfinished sweep).",
        "",
        "| length | " + " | ".join(f"{a} attention" for a in atts) + " | seed study |",
        "|---:|" + "---:|" * (len(atts) + 1),
    ]
    for L in Ls:
        cells = []
        for a in atts:
            n_ok, n = sr[a].get(L, (0, 0))
            n_skip = sum(
                r["attention"] == a and r["seq_len"] == L and r["status"] == "skipped"
                for r in records
            )
            cell = f"{100 * n_ok / n:.0f}% ({n_ok}/{n})" if n else "-"
            if n_skip:
                cell += f", {n_skip} skipped"
            if n_models and n < n_models:
                cell += f", {n_models - n} not run"
            cells.append(cell)
        st = STUDY_SUCCESS.get(L)
        lines.append(
            f"| {L} | " + " | ".join(cells) + f" | {_f(st and 100 * st, '.1f')}"
            f"{'%' if st is not None else ''} |"
        )
    summ = model_summaries(records)
    lines += [
        "",
        "## Models: class, wall and scaling",
        "",
        "Class from the longest working length (High >= 1024, Medium 512-1023, Low "
        "128-511, Very low < 128). Exponents: slope of log-log fits over working lengths "
        ">= 1024 (time: all lengths and the last two too); memory = peak RSS minus the "
        "loaded model; "
        "XLA temp = the compiled program's planned scratch memory. Predicted OOM: where "
        "the memory fit reaches the limit.",
        "",
        "| model | arch | params (M) | attention | longest ok | class | first failure | "
        "tok/s @512 | tok/s/M @512 | time exp (all / >=1024 / last two) | memory exp | "
        "XLA temp exp "
        "| predicted OOM length |",
        "|---|---|---:|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += _summary_rows(summ, _prefill_row, _prefill_fail)
    lines += [
        "",
        "## Every case",
        "",
        "| model | attention | length | status | median ms (IQR) | tokens/s | tok/s/M | "
        "peak RSS MiB | forward MiB | XLA temp MiB | load s | compile s |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(records, key=lambda r: (r["label"], r["attention"], r["seq_len"])):
        ok = r["status"] == "ok"
        med = f"{1e3 * r['median_s']:.1f} ({1e3 * r['iqr_s']:.1f})" if ok else "-"
        lines.append(
            f"| {r['label']} | {r['attention']} | {r['seq_len']} | {r['status']} | {med} | "
            f"{_f(r.get('tokens_per_s') if ok else None, '.0f')} | "
            f"{_f(r.get('tokens_per_s_per_M') if ok else None, '.0f')} | "
            f"{_f(r.get('peak_rss_mb') if ok else r.get('watchdog_max_rss_mb'), '.0f')} | "
            f"{_f(activation_mb(r) if ok else None, '.0f')} | {_f(r.get('xla_temp_mb'), '.0f')} | "
            f"{_f(r.get('load_s'), '.2f')} | {_f(r.get('compile_s'), '.2f')} |"
        )
    if modelled:
        lines += [
            "",
            "## Modelled view on Gemmini (end to end, incl. the model's own output layer)",
            "",
            "Backend: `timeloop` = a real-Timeloop table row (lut/<preset>/timeloop/), "
            "`lut` = an analytical table, `analytical` = the model at a length no table has. "
            "LM head share: the output layer as the model computes it (the adaptive "
            "softmax's head and tail clusters on `cpu`, a full softmax on `paper`).",
            "",
            "| model | hw | length | backend | latency ms | energy mJ | EDP J*s | "
            "attention share (latency / energy) | LM head share |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(modelled, key=lambda r: (r["label"], r["hw"], r["seq_len"])):
            lines.append(
                f"| {r['label']} | {r['hw']} | {r['seq_len']} | {r['backend']} | "
                f"{r['latency_ms']:.3g} | {r['energy_mJ']:.3g} | {r['edp_Js']:.3g} | "
                f"{100 * r['attn_latency_share']:.1f}% / {100 * r['attn_energy_share']:.1f}% | "
                f"{100 * r['lm_head_latency_share']:.1f}% |"
            )
        exps = []
        for label, hw in sorted({(r["label"], r["hw"]) for r in modelled}):
            rs = [
                r
                for r in modelled
                if r["label"] == label and r["hw"] == hw and r["seq_len"] >= 1024
            ]
            e = fit_exponent([r["seq_len"] for r in rs], [r["latency_ms"] for r in rs])
            exps.append(f"{label} on {hw}: {_f(e, '.2f')}")
        lines += ["", "Modelled latency exponent over lengths >= 1024: " + "; ".join(exps)]
    return "\n".join(lines) + "\n"


# ----- decode: KV-cache generation ------------------------------------------------------------
def is_decode(r: dict) -> bool:
    return r.get("scenario") == "decode"


def wall_kind(r: dict | None) -> str:
    """What stopped a case: 'memory' (out of memory, or skipped after one), 'time'
    (timeout, or skipped as predicted past it), 'error', or 'none'."""
    if r is None:
        return "none"
    why = r["status"] if r["status"] != "skipped" else r.get("reason", "")
    if why.startswith("oom"):
        return "memory"
    if why.startswith(("timeout", "predicted")):
        return "time"
    return "error"


def decode_summaries(records: list[dict]) -> list[dict]:
    """One row per (model, batch) of a decode sweep: the longest context that runs, the
    first failure past it and its kind (`wall_kind`), tokens/s per context, and at the
    longest working context the measured memory beside the cache's planned bytes."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["label"], r["arch_id"], r["batch"])].append(r)
    rows = []
    for (label, arch_id, batch), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seq_len"])
        ok = [r for r in rs if r["status"] == "ok"]
        longest = ok[-1] if ok else None
        first_fail = next(
            (r for r in rs if r["status"] != "ok" and (not ok or r["seq_len"] > ok[-1]["seq_len"])),
            None,
        )
        fwd = activation_mb(longest) if longest else None
        rows.append(
            {
                "label": label,
                "arch_id": arch_id,
                "batch": batch,
                "params": next((r["params"] for r in rs if r.get("params")), None),
                "longest_ok": longest["seq_len"] if longest else None,
                "first_fail": first_fail["seq_len"] if first_fail else None,
                "first_fail_status": first_fail["status"] if first_fail else None,
                "first_fail_reason": first_fail["reason"] if first_fail else None,
                "wall": wall_kind(first_fail),
                "tokens_per_s": {r["seq_len"]: r["tokens_per_s"] for r in ok},
                "peak_rss_mb": longest.get("peak_rss_mb") if longest else None,
                "kv_cache_mb": longest.get("kv_cache_mb") if longest else None,
                "forward_mb": fwd,
                "cache_share": (longest["kv_cache_mb"] / fwd) if longest and fwd else None,
                "time_exp": fit_exponent(
                    [r["seq_len"] for r in ok if r["seq_len"] >= 2048],
                    [r["median_s"] for r in ok if r["seq_len"] >= 2048],
                ),
            }
        )
    return sorted(rows, key=lambda r: (r["label"], r["batch"]))


def _load_range(records: list[dict]) -> str:
    loads = [r["load_avg_1m"] for r in records if r.get("load_avg_1m") is not None]
    if not loads:
        return "not recorded"
    return f"{min(loads):.1f}–{max(loads):.1f} (median {statistics.median(loads):.1f})"


def decode_markdown(records: list[dict], run: dict) -> str:
    opts = run.get("options", {})
    m = run.get("machine", {})
    device = next((r["device"] for r in records if r.get("device")), "?")
    contexts = sorted({r["seq_len"] for r in records} | set(opts.get("seq") or ()))
    lines = [
        "# Decode walls (KV-cache generation): tables",
        "",
        f"- checkpoint: `{run.get('checkpoint')}` (space `{run.get('space')}`, vocab "
        f"{run.get('vocab_size')}), commit {str(run.get('git_commit', ''))[:10]}",
        f"- machine: {m.get('cpu_count')} CPUs, {m.get('mem_total_gb')} GiB RAM, "
        f"{m.get('platform')}; device {device}",
        f"- memory limit {opts.get('mem_limit_gb')} GiB (RSS watchdog), timeout "
        f"{opts.get('timeout_s')} s per case; a timed run = {opts.get('steps')} jitted "
        f"single-token steps at the context's end (every sequence of the batch one token per "
        f"step), {opts.get('runs')} timed runs after {opts.get('warmup')} warm-up",
        "- cache preallocated to the context, float32 [layers, 2, batch, heads, context, "
        "d_head]; tokens/s = batch x steps / median run time",
        f"- cases: {len(records)}; wall time of the cases "
        f"{sum(r.get('case_wall_s', 0) for r in records) / 60:.1f} min",
        f"- 1-minute load average at the end of each case's timed runs: {_load_range(records)}"
        f" (on {m.get('cpu_count')} CPUs; above that, the timings are contended)",
        "",
        "## The wall per model and batch",
        "",
        "Wall = what stopped the first failing context: memory (out of memory, or skipped "
        "after a shorter context or smaller batch ran out) or time (timeout, or skipped as "
        "predicted past it). Memory at the longest working context: peak RSS, the forward's "
        "share above the loaded model, and the KV cache planned for it.",
        "",
        "| model | arch | batch | longest ok context | first failure | wall | "
        "tok/s @128 | tok/s @longest | peak RSS MiB | above loaded MiB | KV cache MiB | "
        "time exp (>= 2048) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summ = decode_summaries(records)
    lines += _summary_rows(summ, _decode_row, _decode_fail)
    lines += ["", "## Tokens/s by batch and context", ""]
    by = {(r["label"], r["batch"], r["seq_len"]): r for r in records}
    for label in sorted({r["label"] for r in records}):
        batches = sorted({r["batch"] for r in records if r["label"] == label})
        lines += [
            f"{label}:",
            "",
            "| batch | " + " | ".join(str(c) for c in contexts) + " |",
            "|---:|" + "---:|" * len(contexts),
        ]
        for b in batches:
            cells = []
            for c in contexts:
                r = by.get((label, b, c))
                cells.append(
                    "-"
                    if r is None
                    else f"{r['tokens_per_s']:.0f}"
                    if r["status"] == "ok"
                    else r["status"]
                )
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Every case",
        "",
        "| model | batch | context | status | ms per step (IQR of runs) | tokens/s | "
        "peak RSS MiB | above loaded MiB | KV cache MiB | XLA temp MiB | compile s |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(records, key=lambda r: (r["label"], r["batch"], r["seq_len"])):
        ok = r["status"] == "ok"
        steps = r.get("decode_steps") or opts.get("steps") or 1
        ms = f"{1e3 * r['median_s'] / steps:.2f} ({1e3 * r['iqr_s'] / steps:.2f})" if ok else "-"
        lines.append(
            f"| {r['label']} | {r['batch']} | {r['seq_len']} | {r['status']} | {ms} | "
            f"{_f(r.get('tokens_per_s') if ok else None, '.0f')} | "
            f"{_f(r.get('peak_rss_mb') if ok else r.get('watchdog_max_rss_mb'), '.0f')} | "
            f"{_f(activation_mb(r) if ok else None, '.0f')} | {_f(r.get('kv_cache_mb'), '.0f')} | "
            f"{_f(r.get('xla_temp_mb'), '.0f')} | {_f(r.get('compile_s'), '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def plot_decode(out: Path, records: list[dict]) -> list[Path]:
    """decode_tokens_per_s.png and decode_memory.png: one panel per model, one line per
    batch size against the context; memory beside the loaded model + the planned cache."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({r["label"] for r in records})
    batches = sorted({r["batch"] for r in records})
    color = {b: f"C{i % 10}" for i, b in enumerate(batches)}
    limit = next((r.get("mem_limit_gb") for r in records if r.get("mem_limit_gb")), None)
    paths = []
    for name, ylabel in (("tokens_per_s", "decode tokens/s"), ("memory", "memory (MiB)")):
        fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4), squeeze=False)
        for ax, label in zip(axes[0], labels):
            for b in batches:
                rs = sorted(
                    (r for r in records if r["label"] == label and r["batch"] == b),
                    key=lambda r: r["seq_len"],
                )
                ok = [r for r in rs if r["status"] == "ok"]
                if not ok:
                    continue
                x = [r["seq_len"] for r in ok]
                field = "tokens_per_s" if name == "tokens_per_s" else "peak_rss_mb"
                ax.plot(x, [r[field] for r in ok], "-o", color=color[b], label=f"b={b}")
                if name == "memory":
                    ax.plot(
                        x,
                        [r["rss_loaded_mb"] + r["kv_cache_mb"] for r in ok],
                        ":",
                        color=color[b],
                    )
                # out of memory or time, measured or skipped as certain (`wall_kind`)
                bad = [r for r in rs if r["status"] != "ok" and wall_kind(r) != "error"]
                if bad:
                    y = (
                        [limit * 1024] * len(bad)
                        if name == "memory" and limit
                        else [ok[-1][field]] * len(bad)
                    )
                    ax.plot([r["seq_len"] for r in bad], y, "x", color=color[b], markersize=10)
            if name == "memory" and limit:
                ax.axhline(limit * 1024, color="k", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("context (tokens)")
            ax.set_ylabel(ylabel)
            arch_id = next(r["arch_id"] for r in records if r["label"] == label)
            ax.set_title(f"{label}: {arch_id}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(
            "KV-cache decode: "
            + (
                "tokens/s (x: failed)"
                if name == "tokens_per_s"
                else "peak RSS (solid), loaded model + planned KV cache (dotted), limit, x: failed"
            ),
            fontsize=9,
        )
        fig.tight_layout()
        paths.append(out / f"decode_{name}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_report(out: str | Path) -> Path:
    """tables.md and the plots from the results in `out`; returns the markdown's path.
    Prefill and decode records are summarised apart (decode after prefill)."""
    out = Path(out)
    records = list(latest(read_results(out)).values())
    decode = [r for r in records if is_decode(r)]
    prefill = [r for r in records if not is_decode(r)]
    modelled = read_modelled(out)
    run = read_run(out)
    parts = []
    if prefill or not decode:
        if prefill:
            plot_all(out, prefill, modelled)
        parts.append(markdown(prefill, run, modelled))
    if decode:
        plot_decode(out, decode)
        parts.append(decode_markdown(decode, run))
    path = out / TABLES_MD
    write_text_atomic(path, "\n".join(parts))
    return path
