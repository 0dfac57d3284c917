"""What a co-search runs on and for (`SearchOptions`), checked before anything loads.

Owns the options beyond the run config's `search` section (hardware, objectives,
constraints, cost sources, baselines, final re-evaluation), their checks, which name the
flag to change, and turning `--hw` into fixed configs or a hardware space. It must not
load checkpoints or tables, nor search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from cosearch.config import RunConfig
from cosearch.evo.problem import OBJECTIVES, InfeasibleError, SearchError

HW_SEARCH = "search"
PPL_PRECISIONS = ("f32", "int8")


@dataclass(frozen=True)
class SearchOptions:
    """What the search runs on and for; the NSGA-II numbers live in `config.search`."""

    hw: str = "gemmini-64k-256k"  # a name, NAME1,NAME2 (fronts merged) or "search"
    objectives: tuple[str, ...] = ("ppl", "edp")
    max_ppl: float | None = None
    max_latency_ms: float | None = None
    crossover: str = "uniform"
    regime: str = "optimal"  # LUT mapping regime: optimal | gemmini-tiler
    # what one cost is for (cosearch.scenario): prefill, decode, chat, or NAME:field=value,...
    scenario: str = "prefill"
    lut_dir: str | None = None
    backend: str = "auto"
    strict: bool = False
    hw_budget_kib: int | None = None  # --hw search: SRAM budget (default: the space's)
    hw_pe: tuple[int, ...] = ()  # --hw search: PE array sizes (default: the space's)
    hw_budget_mm2: float | None = None  # --hw search: area budget (SRAMs + PE array, 40 nm)
    baseline_ppl: float | None = None  # from-scratch largest model's validation ppl
    baseline_checkpoint: str | None = None  # ... or its run directory
    final_eval: bool = True  # re-evaluate the front on the valid and test splits
    final_tokens: int = 0  # tokens of each split for that re-evaluation (0 = all)
    budget_tokens: int | None = None  # validation tokens deciding budgets (None: final_tokens)
    # budget candidates are first screened on these many tokens, smallest first, each stage
    # where it is fewer than budget_tokens (empty: no screen); at most budget_max_evals
    # budget scores each (0: no cap)
    budget_screen_tokens: tuple[int, ...] = (20000,)
    budget_max_evals: int = 0
    # perplexity of the float32 subnet, or of its post-training int8 model
    # (cosearch.supernet.quant): the search, the re-evaluation and the budgets all use it
    ppl: str = "f32"


#: Options that only change the reports, so a resumed run may change them.
REPORT_ONLY = (
    "baseline_ppl",
    "baseline_checkpoint",
    "final_eval",
    "final_tokens",
    "budget_tokens",
    "budget_screen_tokens",
    "budget_max_evals",
)


def check(config: RunConfig, opts: SearchOptions) -> None:
    """Every option and search setting that can be judged without loading anything; the
    message names the flag. (Population and the probabilities: `nsga2.Settings`.)"""
    bad = [o for o in opts.objectives if o not in OBJECTIVES]
    if bad or "ppl" not in opts.objectives or len(opts.objectives) < 2:
        raise SearchError(
            f"--objectives {','.join(opts.objectives)}: need ppl plus at "
            f"least one of {[o for o in OBJECTIVES if o != 'ppl']}"
        )
    if config.search.eval_tokens < 0:
        raise SearchError(
            f"--eval-tokens must be >= 0 (0 = the whole validation split), got "
            f"{config.search.eval_tokens}"
        )
    if opts.final_tokens < 0:
        raise SearchError(
            f"--final-tokens must be >= 0 (0 = the whole split), got {opts.final_tokens}"
        )
    if opts.budget_tokens is not None and opts.budget_tokens < 0:
        raise SearchError(
            f"--budget-tokens must be >= 0 (0 = the whole validation split), got "
            f"{opts.budget_tokens}"
        )
    for flag, value in (
        *(("--budget-screen-tokens", t) for t in opts.budget_screen_tokens),
        ("--budget-max-evals", opts.budget_max_evals),
    ):
        if value < 0:
            raise SearchError(f"{flag} must be >= 0 (0 = none), got {value}")
    if opts.max_latency_ms is not None and not _positive(opts.max_latency_ms):
        raise SearchError(
            f"--max-latency-ms must be a positive number of milliseconds, got "
            f"{opts.max_latency_ms}; leave it out for no latency limit"
        )
    if opts.max_ppl is not None and not (_positive(opts.max_ppl) and opts.max_ppl > 1):
        raise InfeasibleError(
            f"--max-ppl {opts.max_ppl} admits no model: perplexity is never below 1; give "
            "a limit above the supernet's perplexities, or leave it out"
        )
    if opts.baseline_ppl is not None and not (
        _positive(opts.baseline_ppl) and opts.baseline_ppl >= 1
    ):
        raise SearchError(f"--baseline-ppl must be a perplexity (>= 1), got {opts.baseline_ppl}")
    if opts.ppl not in PPL_PRECISIONS:
        raise SearchError(f"--ppl '{opts.ppl}' is unknown; known: {', '.join(PPL_PRECISIONS)}")
    from cosearch.hw.cost_model import REGIMES
    from cosearch.hw.lut import BACKENDS
    from cosearch.scenario import get_scenario

    try:
        get_scenario(opts.scenario)
    except (KeyError, ValueError) as e:  # unknown preset or bad override: say which flag
        raise SearchError(f"--scenario: {e}") from None

    for flag, value, known in (
        ("--regime", opts.regime, REGIMES),
        ("--backend", opts.backend, BACKENDS),
    ):
        if value not in known:
            raise SearchError(f"{flag} '{value}' is unknown; known: {', '.join(known)}")
    hw_search_only = {
        "--hw-budget-kib": opts.hw_budget_kib,
        "--hw-budget-mm2": opts.hw_budget_mm2,
        "--hw-pe": opts.hw_pe or None,
    }
    for flag, value in hw_search_only.items():
        if value is None:
            continue
        if opts.hw.strip() != HW_SEARCH:
            raise SearchError(f"{flag} applies to --hw search only (got --hw {opts.hw})")
        values = value if isinstance(value, tuple) else (value,)
        if not all(_positive(v) for v in values):
            raise SearchError(f"{flag} must be positive, got {value}")


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def resolve_hw(opts: SearchOptions) -> tuple[list[Any], Any]:
    """(fixed configs, None) for names, or ([], hardware space) for `search`."""
    from cosearch.hw import gemmini

    if opts.hw.strip() == HW_SEARCH:
        space = gemmini.DEFAULT_HW_SPACE
        if opts.hw_budget_kib is not None:
            space = replace(space, budget_kib=int(opts.hw_budget_kib))
        if opts.hw_pe:
            space = replace(space, pe=tuple(opts.hw_pe))
        if opts.hw_budget_mm2 is not None:
            space = replace(space, budget_mm2=float(opts.hw_budget_mm2))
        if not space.configs():
            area = "" if space.budget_mm2 is None else f", {space.budget_mm2} mm^2 of area"
            raise SearchError(
                f"no hardware config fits the budget ({space.budget_kib} KiB of SRAM{area}; "
                f"the smallest needs {min(space.sp_kib) + min(space.acc_kib)} KiB); raise "
                "--hw-budget-kib" + (" / --hw-budget-mm2" if area else "")
            )
        return [], space
    names = [n.strip() for n in opts.hw.split(",") if n.strip()]
    if not names:
        raise SearchError(
            "--hw is empty; give a name like gemmini-64k-256k, a comma list, or 'search'"
        )
    hws = [gemmini.get_hw(n) for n in names]  # UnknownNameError lists the presets
    if len({h.name for h in hws}) != len(hws):
        raise SearchError(f"--hw lists a config twice: {opts.hw}")
    return hws, None
