"""LUT format and lookup: per-GEMM cost tables on disk, and the arch coster on top.

Owns the LUT file layout (documented in lut/README.md), reading/writing rows atomically,
and `Coster`: cost of a whole `Arch` on a `GemminiConfig` (latency, energy, EDP,
per-op-kind breakdown, backbone-only vs end-to-end), cached, with a vectorised fast path
for the co-search. Shapes missing from a LUT fall back to the analytical model (warned
once, counted) unless `strict=True`. It must not run Timeloop (see `timeloop`).

Layout under the LUT directory (default: the repository's lut/):
  <preset>/<hw>.csv                    analytical, regime optimal (+ <hw>.meta.json)
  <preset>/gemmini-tiler/<hw>.csv      analytical, regime gemmini-tiler
  <preset>/timeloop/<hw>.csv           real Timeloop (regime optimal); preferred by 'auto'
  <preset>/<scenario tag>/...          the same three for a serving scenario other than the
                                       default batch-1 prefill (`Scenario.tag`, e.g.
                                       decode-b1-c128, chat-b1-p64-g64)
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cosearch.errors import InputFileError
from cosearch.hw.cost_model import (
    REGIMES,
    gemm_cost,
    kv_write_cost,
    nonlinear_cost,
    norm_capacity,
)
from cosearch.hw.gemmini import GemminiConfig, get_hw
from cosearch.hw.workload import (
    CAUSAL,
    GEMM_CONTEXT,
    GEMM_KINDS,
    MEMORY_KINDS,
    NONLINEAR_KINDS,
    OutputLayer,
    default_output_layer,
    phase_gemm_shapes,
    phase_ops,
)
from cosearch.runinfo import write_csv_atomic, write_text_atomic  # noqa: F401 (re-exported)
from cosearch.scenario import Phase, Scenario, get_scenario
from cosearch.space import Arch, SearchSpace

log = logging.getLogger(__name__)

DEFAULT_LUT_DIR = Path(__file__).resolve().parents[2] / "lut"
LUT_COLUMNS = (
    "hw",
    "regime",
    "op",
    "M",
    "K",
    "N",
    "cycles",
    "energy_pJ",
    "backend",
    "victory",
    "tries",
    "mapper_seconds",
)
# Timeloop tables only: 1 where the wall limit stopped the kept mapping's search
TIMELOOP_COLUMNS = ("wall_cut",)
BACKENDS = ("auto", "lut", "analytical")
KINDS = GEMM_KINDS + NONLINEAR_KINDS + MEMORY_KINDS


def lut_path(
    lut_dir: str | Path,
    preset: str,
    hw: str,
    regime: str = "optimal",
    backend: str = "analytical",
    scenario_tag: str | None = None,
) -> Path:
    """Where the LUT of (preset, hw, regime, backend[, scenario]) lives (see the module
    docstring); `scenario_tag` None or '' is the default prefill's table."""
    base = Path(lut_dir) / preset
    if scenario_tag:
        base = base / scenario_tag
    if backend == "timeloop":
        return base / "timeloop" / f"{hw}.csv"
    return base / f"{hw}.csv" if regime == "optimal" else base / regime / f"{hw}.csv"


def meta_path(csv_path: str | Path) -> Path:
    p = Path(csv_path)
    return p.with_name(p.stem + ".meta.json")


class LutError(InputFileError):
    """A LUT file that cannot be used; the message names the file and line."""


class LutNotFoundError(InputFileError, FileNotFoundError):
    """No LUT where backend 'lut' needs one; the message says how to build it."""


class LutMissingShapesError(InputFileError, KeyError):
    """Shapes missing from a LUT under strict=True; the message says how to rebuild it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


REQUIRED_COLUMNS = ("hw", "M", "K", "N", "cycles", "energy_pJ")
REBUILD = "rebuild the table with `python -m cosearch.build_lut` (lut/README.md) or fix the row"


def read_lut(path: str | Path) -> list[dict]:
    """Rows of a LUT CSV as dicts, numbers converted and checked: positive integer M, K, N,
    positive finite cycles and energy, a valid hardware name and a known regime. A bad
    row is a LutError naming the file and line."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise LutError(
                    f"{path}: not a LUT (header lacks {', '.join(missing)}; expected "
                    f"{','.join(LUT_COLUMNS)}); {REBUILD}"
                )
            hws: dict[str, bool] = {}
            return [_lut_row(path, line, r, hws) for line, r in enumerate(reader, start=2)]
    except UnicodeDecodeError:
        raise LutError(f"{path}: not a LUT (not UTF-8 text); {REBUILD}") from None
    except (IsADirectoryError, PermissionError) as e:
        raise LutError(f"cannot read LUT '{path}': {e.strerror}") from None


def _lut_row(path: Path, line: int, r: dict, hws: dict[str, bool]) -> dict:
    def bad(what: str) -> LutError:
        return LutError(f"{path}, line {line}: {what}; {REBUILD}")

    for k in ("M", "K", "N"):
        v = _number(r.get(k))
        if v is None or v <= 0 or v != int(v):
            raise bad(f"{k} must be a positive integer, got {r.get(k)!r}")
        r[k] = int(v)
    for k in ("cycles", "energy_pJ"):
        v = _number(r.get(k))
        if v is None or not math.isfinite(v) or v <= 0:
            raise bad(f"{k} must be a positive finite number, got {r.get(k)!r}")
        r[k] = v
    for k in ("victory", "tries", "mapper_seconds", *TIMELOOP_COLUMNS):
        if r.get(k) not in (None, ""):
            v = _number(r[k])
            if v is None or not v >= 0:
                raise bad(f"{k} must be a number >= 0 or empty, got {r[k]!r}")
            r[k] = v if k == "mapper_seconds" else int(v)
    if r["hw"] not in hws:
        try:
            get_hw(r["hw"])
            hws[r["hw"]] = True
        except (KeyError, ValueError):
            raise bad(f"hw {r['hw']!r} is not a hardware config name (gemmini-<S>k-<A>k)") from None
    if r.get("regime") and r["regime"] not in REGIMES:
        raise bad(f"regime {r['regime']!r} is not one of {', '.join(REGIMES)}")
    return r


def _number(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def write_lut(path: str | Path, rows: Iterable[dict]) -> None:
    """Write rows atomically (temp file in the same directory, then os.replace); the
    Timeloop-only columns only where a row has them."""
    rows = list(rows)
    cols = LUT_COLUMNS + tuple(c for c in TIMELOOP_COLUMNS if any(r.get(c, "") != "" for r in rows))
    write_csv_atomic(
        path,
        cols,
        ({k: _fmt(r.get(k, "")) for k in cols} for r in rows),
        extrasaction="ignore",
    )


def _fmt(v):
    """Floats with 12 significant digits: reading a LUT back and rewriting it (resume)
    must not lose precision."""
    if isinstance(v, float):
        return f"{v:.12g}"
    return v


def row_context(op: str | None) -> str:
    """The GEMM context (`workload.CONTEXTS`) of a LUT row from its `op` column (kinds
    joined with '+', all of one context); rows of other tools ('gemm') are 'weights'."""
    kind = (op or "").split("+")[0]
    return GEMM_CONTEXT.get(kind, "weights")


class LutTable:
    """(M, K, N, context) -> (cycles, energy_pJ) from one LUT file; given `hw` (and
    `regime`), every row must be of that config (and regime): a table is keyed by its file
    name. In a table of regime optimal, whose costs do not depend on the GEMM context
    (e.g. Timeloop's), a shape asked for in a context the table lacks uses the shape's row
    of another context."""

    def __init__(self, path: str | Path, hw: str | None = None, regime: str | None = None) -> None:
        self.path = Path(path)
        self.table: dict[tuple[int, int, int, str], tuple[float, float]] = {}
        self.by_shape: dict[tuple[int, int, int], tuple[float, float]] = {}
        for line, r in enumerate(read_lut(path), start=2):
            for key, want in (("hw", hw), ("regime", regime)):
                if want is not None and (r.get(key) or "optimal") != want:
                    raise LutError(
                        f"{self.path}, line {line}: a row of {key} {r.get(key)!r} in the "
                        f"{want} table; {REBUILD}"
                    )
            shape = (r["M"], r["K"], r["N"])
            self.table[(*shape, row_context(r.get("op")))] = (r["cycles"], r["energy_pJ"])
            if (r.get("regime") or "optimal") == "optimal":
                self.by_shape.setdefault(shape, (r["cycles"], r["energy_pJ"]))

    def get(
        self, shape: tuple[int, int, int], context: str = "weights"
    ) -> tuple[float, float] | None:
        hit = self.table.get((*shape, context))
        return hit if hit is not None else self.by_shape.get(tuple(shape))


@dataclass(frozen=True)
class ArchCost:
    """Cost of one costed unit of a scenario (`Coster.scenario`: by default one prefill)
    of an arch on one config. Cycles at the config's clock."""

    latency_cycles: float
    energy_pJ: float
    backbone_latency_cycles: float
    backbone_energy_pJ: float
    breakdown: dict[str, tuple[float, float]]  # op kind -> (cycles, pJ)
    clock_ghz: float = 1.0
    # > 0: a softmax or LayerNorm row does not fit (cost_model.norm_capacity): the arch
    # cannot run at this length on this config; the relative excess and why
    violation: float = 0.0
    infeasible: str = ""

    @property
    def latency_s(self) -> float:
        return self.latency_cycles / (self.clock_ghz * 1e9)

    @property
    def energy_J(self) -> float:
        return self.energy_pJ * 1e-12

    @property
    def edp(self) -> float:
        """Energy-delay product in J*s (end to end)."""
        return self.energy_J * self.latency_s

    @property
    def backbone_edp(self) -> float:
        return (
            self.backbone_energy_pJ * 1e-12 * self.backbone_latency_cycles / (self.clock_ghz * 1e9)
        )


def portable_path(path: str | Path) -> str:
    """A table's path relative to the repository (no machine paths in run metadata)."""
    try:
        return str(Path(path).resolve().relative_to(DEFAULT_LUT_DIR.parent))
    except ValueError:
        return Path(path).name


class Coster:
    """Cost of archs of `space` on Gemmini configs, from LUTs or the analytical model.

    backend: 'lut' (the LUT file must exist), 'analytical' (model only) or 'auto' (LUT if
    present - real Timeloop first for regime optimal - else the model). Shapes missing
    from a LUT use the model (warning once, counted in `fallbacks`) unless strict=True.
    `output`: the output layer the model computes (default: the space's preset's,
    `workload.default_output_layer`); `causal`: how the attention's causal mask is run
    (`workload.CAUSAL`: 'mask', or 'triangular' where the software skips the blocks above
    the diagonal). `scenario` (`cosearch.scenario`, a Scenario or a spec such as
    'decode' or 'chat:generate=32'): what one cost is for; default a batch-1 prefill of
    `seq_len` tokens (default: the space's), today's unit. A chat is costed exactly, pass
    by pass (a prefill, then every decode step at its own context length). An arch whose
    softmax or LayerNorm rows do not fit the config is costed all the same and marked
    (`ArchCost.violation`, `ArchCost.infeasible`)."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        seq_len: int | None = None,
        regime: str = "optimal",
        lut_dir: str | Path | None = None,
        backend: str = "auto",
        strict: bool = False,
        output: OutputLayer | None = None,
        causal: str = "mask",
        scenario: Scenario | str | None = None,
    ) -> None:
        if regime not in REGIMES:
            raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIMES)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
        if causal not in CAUSAL:
            raise ValueError(f"unknown causal mode '{causal}'; known: {', '.join(CAUSAL)}")
        sc = get_scenario(scenario)
        if seq_len is not None:
            if sc.kind != "prefill":
                raise ValueError(
                    f"seq_len applies to prefill scenarios; scenario {sc.name} sets its "
                    "own lengths (context, prompt, generate)"
                )
            sc = replace(sc, seq_len=int(seq_len))
        self.space = space
        self.scenario = sc.resolve(space.seq_len)
        self.phases: list[Phase] = self.scenario.phases(space.seq_len)
        # the prefill length (the longest score row for other scenarios)
        self.seq_len = self.scenario.max_context(space.seq_len)
        self.regime = regime
        self.lut_dir = DEFAULT_LUT_DIR if lut_dir is None else Path(lut_dir)
        self.backend = backend
        self.strict = strict
        self.output = default_output_layer(space) if output is None else output
        self.causal = causal
        self.fallbacks = 0
        # per config: distinct (shape, context) costed from its table / by the model
        self._covered: dict[str, tuple[set, set]] = {}
        self._warned = False
        self._tables: dict[GemminiConfig, LutTable | None] = {}
        self._fast: dict[GemminiConfig, dict] = {}
        self._cache: dict[tuple[Arch, GemminiConfig], ArchCost] = {}

    @property
    def scenario_tag(self) -> str | None:
        """The LUT subdirectory of the scenario (None: the default prefill's tables)."""
        return None if self.scenario.is_default else self.scenario.tag(self.space.seq_len)

    # --- per-shape costs ----------------------------------------------------------------
    def table_for(self, hw: GemminiConfig) -> LutTable | None:
        """The LUT used for `hw` (None: analytical)."""
        if hw in self._tables:
            return self._tables[hw]
        table = None
        tag = self.scenario_tag
        # a LUT is keyed by name: only configs the name fully describes may use it
        if self.backend != "analytical" and hw == get_hw(hw.name):
            cands = [
                lut_path(self.lut_dir, self.space.name, hw.name, self.regime, scenario_tag=tag)
            ]
            if self.regime == "optimal":
                cands.insert(
                    0,
                    lut_path(
                        self.lut_dir, self.space.name, hw.name, backend="timeloop", scenario_tag=tag
                    ),
                )
            found = [p for p in cands if p.exists()]
            if found:
                table = LutTable(found[0], hw.name, self.regime)
                log.info("costing %s on %s from %s", self.space.name, hw.name, found[0])
            elif self.backend == "lut":
                flag = "" if tag is None else f" --scenario {self.scenario.name}"
                raise LutNotFoundError(
                    f"no LUT for preset '{self.space.name}', {hw.name}, regime {self.regime}"
                    f"{'' if tag is None else f', scenario {tag}'} (looked for "
                    f"{', '.join(map(str, cands))}); build it with: python -m "
                    f"cosearch.build_lut --preset {self.space.name} --hw {hw.name} "
                    f"--backend analytical --regime {self.regime}{flag}, or use backend='auto'"
                )
        self._tables[hw] = table
        return table

    def sources(self) -> dict[str, str]:
        """Which table each config used so far (path, or 'analytical <regime>'), for run
        metadata; plus the number of analytical fallbacks."""
        out = {
            hw.name: (portable_path(t.path) if t is not None else f"analytical {self.regime}")
            for hw, t in self._tables.items()
        }
        out["fallbacks"] = str(self.fallbacks)
        return out

    def coverage(self) -> dict[str, str]:
        """Per config whose costs came from a LUT: how many distinct GEMM shapes (with
        context) its table gave, and how many the analytical model costed because the
        table lacks them (a partial Timeloop table), for reports."""
        out = {}
        for hw, t in self._tables.items():
            if t is None or hw.name not in self._covered:
                continue
            hit, missed = self._covered[hw.name]
            kind = "Timeloop" if "timeloop" in t.path.parts else "analytical"
            out[hw.name] = (
                f"{len(hit)} of {len(hit) + len(missed)} GEMM shapes from the {kind} table "
                f"{portable_path(t.path)}, {len(missed)} from the analytical model"
            )
        return out

    def gemm_costs(
        self,
        shapes: list[tuple[int, int, int]],
        hw: GemminiConfig,
        contexts: list[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, energy_pJ) arrays for GEMM shapes on `hw`, each in its context
        (`workload.CONTEXTS`, default 'weights')."""
        ctx = ["weights"] * len(shapes) if contexts is None else list(contexts)
        table = self.table_for(hw)
        cyc = np.full(len(shapes), np.nan)
        en = np.full(len(shapes), np.nan)
        if table is not None:
            for i, (s, c) in enumerate(zip(shapes, ctx, strict=True)):
                v = table.get(tuple(int(x) for x in s), c)
                if v is not None:
                    cyc[i], en[i] = v
        miss = np.isnan(cyc)
        if table is not None:
            hit, missed = self._covered.setdefault(hw.name, (set(), set()))
            for i, (s, c) in enumerate(zip(shapes, ctx, strict=True)):
                (missed if miss[i] else hit).add((tuple(int(x) for x in s), c))
        if miss.any():
            if table is not None:
                missing = [shapes[i] for i in np.where(miss)[0]]
                if self.strict:
                    flag = "" if self.scenario_tag is None else f" --scenario {self.scenario.name}"
                    raise LutMissingShapesError(
                        f"{len(missing)} GEMM shape(s) (M,K,N) missing from {table.path}, "
                        f"e.g. {missing[:3]}; rebuild it with python -m cosearch.build_lut "
                        f"--preset {self.space.name} --hw {hw.name}{flag} (or strict=False)"
                    )
                self.fallbacks += len(missing)
                if not self._warned:
                    log.warning(
                        "%d GEMM shape(s) missing from %s (e.g. %s): using the "
                        "analytical model for them (further misses are only counted "
                        "in Coster.fallbacks)",
                        len(missing),
                        table.path,
                        missing[:3],
                    )
                    self._warned = True
            idx = np.where(miss)[0]
            arr = np.asarray([shapes[i] for i in idx])
            c = gemm_cost(
                arr[:, 0],
                arr[:, 1],
                arr[:, 2],
                hw,
                regime=self.regime,
                context=[ctx[i] for i in idx],
            )
            cyc[miss], en[miss] = c["cycles"], c["energy_pJ"]
        return cyc, en

    def _attention_fraction(self, hw: GemminiConfig, L: int) -> float:
        """Share of the L x L attention blocks computed: all of them, or with 'triangular'
        the blocks on and below the diagonal (of the array's DIM x DIM blocks)."""
        if self.causal == "mask":
            return 1.0
        nb = -(-L // hw.pe_rows)
        return (nb + 1) / (2 * nb)

    def _nonlinear(self, kind: str, elements: float, instance: float, hw) -> np.ndarray:
        if kind == "kv_write":
            return np.stack(kv_write_cost(elements, hw, regime=self.regime))
        return np.stack(
            nonlinear_cost(kind, elements, hw, regime=self.regime, instance_elements=instance)
        )

    # --- fast path ----------------------------------------------------------------------
    def _tables_for(self, hw: GemminiConfig) -> dict:
        """Per-choice costs of every op of the space in the scenario on `hw`, summed over
        the scenario's passes (every cost is linear in an arch's per-layer choices, head
        count, layer count and FFN width, so the sum over passes is exact)."""
        if hw in self._fast:
            return self._fast[hw]
        sp, hd = self.space, self.space.head_dim
        D, H, F = sp.d_model, sp.heads, sp.d_ffn
        shapes, ctxs, index = [], [], {}
        for ph in self.phases:
            for kind, M, K, N in sorted(phase_gemm_shapes(sp, ph, self.output)):
                if (kind, M, K, N) not in index:
                    index[(kind, M, K, N)] = len(shapes)
                    shapes.append((M, K, N))
                    ctxs.append(GEMM_CONTEXT[kind])
        cyc, en = self.gemm_costs(shapes, hw, ctxs)
        ce = np.stack([cyc, en], axis=-1)  # (S, 2)

        def one(kind, M, K, N):
            return ce[index[(kind, M, K, N)]]

        t: dict = {}

        def add(key, value):
            t[key] = value if key not in t else t[key] + value

        for ph in self.phases:
            R, b = ph.rows, ph.batch
            add("qkv", 3 * np.array([[one("qkv", R, d, hd * h) for h in H] for d in D]))
            add("out_proj", np.array([[one("out_proj", R, hd * h, d) for h in H] for d in D]))
            add("ffn1", np.array([[one("ffn1", R, d, f) for f in F] for d in D]))
            add("ffn2", np.array([[one("ffn2", R, f, d) for f in F] for d in D]))
            add(
                "lm_head",
                np.array(
                    [
                        sum(one("lm_head", *s) for s in self.output.gemms(ph.logit_rows, d))
                        for d in D
                    ]
                ),
            )
            if ph.kind == "decode":  # per head: b GEMVs each over the cache
                c = ph.context
                add("kv_score", b * one("kv_score", 1, hd, c))
                add("kv_context", b * one("kv_context", 1, c, hd))
                add("softmax", self._nonlinear("softmax", b * c, c, hw))
            else:  # per head: b L x L attentions
                L = ph.tokens
                frac = self._attention_fraction(hw, L)
                mask_el = L * L if self.causal == "mask" else -(-L // hw.pe_rows) * hw.pe_rows**2
                add("attn_score", b * (frac * one("attn_score", L, hd, L)))
                add("attn_context", b * (frac * one("attn_context", L, L, hd)))
                add("softmax", self._nonlinear("softmax", b * L * L, L * L, hw))
                add("mask", self._nonlinear("mask", b * mask_el, L * L, hw))
            if ph.writes_cache:  # per head: its K and V rows
                add("kv_write", self._nonlinear("kv_write", 2 * R * hd * ph.kv_bytes, 0, hw))
            # per (width, instance): LayerNorm / residual over R x d
            ln = np.array([self._nonlinear("layernorm", R * d, R * d, hw) for d in D])
            add("layernorm", ln)
            add("residual", np.array([self._nonlinear("residual", R * d, R * d, hw) for d in D]))
            if ph.logit_rows == R:
                add("layernorm_final", ln)
            else:
                add(
                    "layernorm_final",
                    np.array(
                        [
                            self._nonlinear("layernorm", ph.logit_rows * d, ph.logit_rows * d, hw)
                            for d in D
                        ]
                    ),
                )
            t["gelu_rows"] = t.get("gelu_rows", 0) + R
        t["gelu_el"] = self._nonlinear("gelu", 1.0, 1.0, hw)
        # the final LayerNorm is the per-layer one's twin when every position has logits
        t["final_is_layer"] = bool(np.array_equal(t["layernorm_final"], t["layernorm"]))
        excess, reasons = norm_capacity(self.seq_len, np.asarray(D), hw)
        t["violation"], t["reasons"] = excess, reasons  # (nD,)
        self._fast[hw] = t
        return t

    def cost_many(self, archs: list[Arch], hw: str | GemminiConfig) -> list[ArchCost]:
        """Vectorised cost of many archs on one config (the co-search's fast path)."""
        cfg = get_hw(hw)
        if not archs:
            return []
        sp = self.space
        try:
            di = np.array([sp.d_model.index(a.d_model) for a in archs])
            nmax = max(a.n_layers for a in archs)
            hi = np.zeros((len(archs), nmax), dtype=np.int64)
            fi = np.zeros((len(archs), nmax), dtype=np.int64)
            hv = np.zeros((len(archs), nmax))
            fv = np.zeros((len(archs), nmax))
            mask = np.zeros((len(archs), nmax))
            for r, a in enumerate(archs):
                n = a.n_layers
                hi[r, :n] = [sp.heads.index(h) for h in a.heads]
                fi[r, :n] = [sp.d_ffn.index(f) for f in a.d_ffn]
                hv[r, :n], fv[r, :n], mask[r, :n] = a.heads, a.d_ffn, 1.0
        except ValueError:
            return [self._cost_slow(a, cfg) for a in archs]
        t = self._tables_for(cfg)
        m = mask[..., None]
        D2 = di[:, None]
        heads = (hv * mask).sum(1)[:, None]
        layers = mask.sum(1)[:, None]
        if t["final_is_layer"]:
            layernorm = (2 * layers + 1) * t["layernorm"][di]
        else:
            layernorm = 2 * layers * t["layernorm"][di] + t["layernorm_final"][di]
        parts = {
            "qkv": (t["qkv"][D2, hi] * m).sum(1),
            "out_proj": (t["out_proj"][D2, hi] * m).sum(1),
            "ffn1": (t["ffn1"][D2, fi] * m).sum(1),
            "ffn2": (t["ffn2"][D2, fi] * m).sum(1),
            **{
                k: heads * t[k]
                for k in ("attn_score", "attn_context", "kv_score", "kv_context", "softmax")
                if k in t
            },
            **{k: heads * t[k] for k in ("mask", "kv_write") if k in t},
            "layernorm": layernorm,
            "gelu": ((fv * mask).sum(1) * t["gelu_rows"])[:, None] * t["gelu_el"],
            "residual": 2 * layers * t["residual"][di],
            "lm_head": t["lm_head"][di],
        }
        total = sum(parts.values())
        backbone = total - parts["lm_head"]
        kinds = list(parts)
        stacked = np.stack([parts[k] for k in kinds], axis=1)  # (A, kinds, 2)
        out = []
        for r in range(len(archs)):
            bd = {
                k: (float(stacked[r, j, 0]), float(stacked[r, j, 1])) for j, k in enumerate(kinds)
            }
            out.append(
                ArchCost(
                    float(total[r, 0]),
                    float(total[r, 1]),
                    float(backbone[r, 0]),
                    float(backbone[r, 1]),
                    bd,
                    cfg.clock_ghz,
                    float(t["violation"][di[r]]),
                    t["reasons"][di[r]],
                )
            )
        return out

    def _cost_slow(self, arch: Arch, cfg: GemminiConfig) -> ArchCost:
        """Op-list path for archs outside the space's choice lists."""
        bd: dict[str, list[float]] = {}
        for ph in self.phases:
            ops = phase_ops(arch, self.space, ph, output=self.output, causal=self.causal)
            gemms = [o for o in ops if o.is_gemm]
            cyc, en = self.gemm_costs([o.shape for o in gemms], cfg, [o.context for o in gemms])
            frac = self._attention_fraction(cfg, ph.tokens)
            for o, c, e in zip(gemms, cyc, en, strict=True):
                acc = bd.setdefault(o.kind, [0.0, 0.0])
                f = frac if o.causal else 1.0
                acc[0] += o.count * c * f
                acc[1] += o.count * e * f
            for o in ops:
                if not o.is_gemm:
                    el = o.elements
                    if o.kind == "mask" and o.causal:  # the diagonal blocks only
                        el = -(-ph.tokens // cfg.pe_rows) * cfg.pe_rows**2
                    c, e = self._nonlinear(o.kind, el * o.count, o.elements, cfg)
                    acc = bd.setdefault(o.kind, [0.0, 0.0])
                    acc[0] += float(c)
                    acc[1] += float(e)
        tc = sum(v[0] for v in bd.values())
        te = sum(v[1] for v in bd.values())
        lm = bd.get("lm_head", [0.0, 0.0])
        excess, reasons = norm_capacity(self.seq_len, arch.d_model, cfg)
        return ArchCost(
            tc,
            te,
            tc - lm[0],
            te - lm[1],
            {k: (v[0], v[1]) for k, v in bd.items()},
            cfg.clock_ghz,
            float(excess),
            reasons[0],
        )

    def cost(self, arch: Arch, hw: str | GemminiConfig) -> ArchCost:
        """Cost of one arch on one config (cached)."""
        cfg = get_hw(hw)
        key = (arch, cfg)
        if key not in self._cache:
            self._cache[key] = self.cost_many([arch], cfg)[0]
        return self._cache[key]
