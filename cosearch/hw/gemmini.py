"""Gemmini hardware configurations: `GemminiConfig`, the `gemmini-<S>k-<A>k` names, the
hardware search space, and the per-access energies of its memories.

Owns what a hardware configuration *is* and what one access to each memory costs
(Accelergy/CACTI figures of ../shared/timeloop/GEMMINI_MODEL.md). It must not cost
workloads: that is `cost_model` (analytical) and `timeloop` (real tool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cosearch.errors import UserError
from cosearch.registry import UnknownNameError

NAME_PATTERN = "gemmini-<S>k-<A>k[-pe<R>x<C>]"
_NAME_RE = re.compile(r"^gemmini-(\d+)k-(\d+)k(?:-pe(\d+)x(\d+))?$")


@dataclass(frozen=True)
class GemminiConfig:
    """One Gemmini instance. Defaults are Gemmini's `defaultConfig` (Configs.scala):
    16x16 weight-stationary int8 mesh, int32 accumulator, 256 KiB scratchpad in 4 banks,
    64 KiB accumulator in 2 banks; plus the thesis's normalization units (LayerNorm/softmax,
    as in `ibertInferenceConfig`), which every config here has so that nonlinear ops are
    costed the same way on all of them. DRAM bandwidth and clock follow the Timeloop
    reference model (8 B/cycle at 1 GHz)."""

    sp_kib: int = 256
    acc_kib: int = 64
    pe_rows: int = 16
    pe_cols: int = 16
    sp_banks: int = 4
    acc_banks: int = 2
    input_bits: int = 8
    acc_bits: int = 32
    dataflow: str = "WS"
    dram_bytes_per_cycle: float = 8.0
    clock_ghz: float = 1.0
    has_normalizations: bool = True

    def __post_init__(self) -> None:
        for f in ("sp_kib", "acc_kib", "pe_rows", "pe_cols"):
            if int(getattr(self, f)) <= 0:
                raise ValueError(f"GemminiConfig.{f} must be positive, got {getattr(self, f)}")

    @property
    def name(self) -> str:
        base = f"gemmini-{self.sp_kib}k-{self.acc_kib}k"
        if (self.pe_rows, self.pe_cols) != (16, 16):
            base += f"-pe{self.pe_rows}x{self.pe_cols}"
        return base

    @property
    def total_sram_kib(self) -> int:
        return self.sp_kib + self.acc_kib

    # --- derived capacities (words as Timeloop counts them) ------------------------------
    @property
    def sp_words(self) -> int:
        """Scratchpad capacity in int8 words."""
        return self.sp_kib * 1024

    @property
    def acc_words_per_col(self) -> int:
        """Accumulator capacity in int32 words per column instance (one per PE column)."""
        return self.acc_kib * 1024 // (4 * self.pe_cols)

    @property
    def sp_block(self) -> int:
        """Words per scratchpad access (one row of `pe_cols` int8)."""
        return self.pe_cols

    @property
    def n_pe(self) -> int:
        return self.pe_rows * self.pe_cols

    def area_mm2(self) -> float:
        """Accelerator area at 40 nm (mm^2): scratchpad + accumulator SRAMs (the CACTI 7
        areas of the Accelergy ERT/ART in GEMMINI_MODEL.md, interpolated in log size) plus
        the PE array (`PE_AREA_MM2` per PE). Leaves out the controller, DMA and
        normalization units (no public figure; the same for every config of a PE size)."""
        return float(self.sram_area_mm2() + self.n_pe * PE_AREA_MM2)

    def sram_area_mm2(self) -> float:
        """Scratchpad + accumulator area (CACTI, 40 nm), interpolated in log size."""
        sp = _loglog(self.sp_kib, _SP_KIB, _SP_AREA)
        acc = _loglog(self.acc_kib / self.pe_cols, _ACC_INST_KIB, _ACC_AREA / 16) * self.pe_cols
        return float(sp + acc)


def get_hw(name: str | GemminiConfig) -> GemminiConfig:
    """A config from its name (`gemmini-64k-256k`, optional `-pe32x32`); a GemminiConfig
    passes through. Unknown or malformed names fail with the presets and the pattern."""
    if isinstance(name, GemminiConfig):
        return name
    if name in HW_PRESETS:
        return HW_PRESETS[name]
    m = _NAME_RE.match(str(name).strip())
    if not m:
        known = ", ".join(sorted(HW_PRESETS, key=_sort_key))
        raise UnknownNameError(
            f"unknown hardware config '{name}'; expected the pattern {NAME_PATTERN} "
            f"(scratchpad S KiB, accumulator A KiB, other fields at Gemmini defaults), "
            f"e.g. gemmini-64k-256k (thesis) or gemmini-256k-64k (stock). Presets: {known}."
        )
    s, a, r, c = (int(g) if g is not None else 16 for g in m.groups())
    if s < 1 or a < 1:
        raise UserError(
            f"hardware config '{name}': scratchpad and accumulator sizes must be >= 1 KiB "
            f"(got {s} KiB and {a} KiB); e.g. gemmini-64k-256k"
        )
    if r < 1 or c < 1:
        raise UserError(
            f"hardware config '{name}': the PE array must be at least 1x1 (got {r}x{c}); "
            "e.g. gemmini-64k-256k-pe32x32, or no -pe suffix for Gemmini's 16x16"
        )
    if a * 1024 < 4 * c:
        raise UserError(
            f"hardware config '{name}': a {a} KiB accumulator cannot hold one int32 row of "
            f"a {c}-column array; it must be >= {-(-4 * c // 1024)} KiB"
        )
    return GemminiConfig(sp_kib=s, acc_kib=a, pe_rows=r, pe_cols=c)


def parse_hw_list(spec: str) -> list[GemminiConfig]:
    """`NAME[,NAME...]` or `grid` (the default hardware search space) -> configs."""
    if spec.strip() == "grid":
        return DEFAULT_HW_SPACE.configs()
    hws = [get_hw(s) for s in spec.split(",") if s.strip()]
    if not hws:
        raise UserError(
            f"--hw '{spec}' names no hardware config; give e.g. gemmini-64k-256k, a comma "
            "list, or 'grid'"
        )
    return hws


def _sort_key(name: str) -> tuple:
    m = _NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2)), name) if m else (0, 0, name)


@dataclass(frozen=True)
class HwSearchSpace:
    """Buffer sizes (KiB, powers of two) and PE array sizes searched jointly with the model,
    under a total-SRAM budget (scratchpad + accumulator KiB; default 320 = both thesis
    configs) and optionally an area budget (mm^2 at 40 nm, SRAMs and PE array;
    `GemminiConfig.area_mm2`).
    Genes: [scratchpad index, accumulator index, PE index]."""

    sp_kib: tuple = (16, 32, 64, 128, 256, 512)
    acc_kib: tuple = (16, 32, 64, 128, 256, 512)
    pe: tuple = (16,)
    budget_kib: int = 320
    budget_mm2: float | None = None

    def contains(self, cfg: GemminiConfig) -> bool:
        return (
            cfg.sp_kib in self.sp_kib
            and cfg.acc_kib in self.acc_kib
            and cfg.pe_rows == cfg.pe_cols
            and cfg.pe_rows in self.pe
            and self.feasible(cfg)
        )

    def configs(self) -> list[GemminiConfig]:
        """All configs of the grid within the budget, in gene order."""
        out = []
        for p in self.pe:
            for s in self.sp_kib:
                for a in self.acc_kib:
                    cfg = GemminiConfig(sp_kib=s, acc_kib=a, pe_rows=p, pe_cols=p)
                    if self.feasible(cfg):
                        out.append(cfg)
        return out

    @property
    def gene_cardinalities(self) -> tuple[int, ...]:
        return (len(self.sp_kib), len(self.acc_kib), len(self.pe))

    def encode(self, cfg: GemminiConfig) -> list[int]:
        if not self.contains(cfg):
            raise ValueError(
                f"{cfg.name} is not in the hardware space (sp {self.sp_kib}, acc {self.acc_kib}, "
                f"pe {self.pe}, budget {self.budget_kib} KiB total SRAM)"
            )
        return [
            self.sp_kib.index(cfg.sp_kib),
            self.acc_kib.index(cfg.acc_kib),
            self.pe.index(cfg.pe_rows),
        ]

    def decode(self, genes) -> GemminiConfig:
        """Genes -> config. May exceed the budget: check `feasible` (the search treats it
        as a constraint) or use `repair`."""
        card = self.gene_cardinalities
        if len(genes) != len(card) or any(
            not 0 <= int(g) < c for g, c in zip(genes, card, strict=True)
        ):
            raise ValueError(f"hardware genes {list(genes)} do not fit cardinalities {card}")
        p = self.pe[int(genes[2])]
        return GemminiConfig(
            sp_kib=self.sp_kib[int(genes[0])],
            acc_kib=self.acc_kib[int(genes[1])],
            pe_rows=p,
            pe_cols=p,
        )

    def feasible(self, cfg: GemminiConfig) -> bool:
        """Within the SRAM budget (and the area budget, if any)."""
        if cfg.total_sram_kib > self.budget_kib:
            return False
        return self.budget_mm2 is None or cfg.area_mm2() <= self.budget_mm2

    def repair(self, genes) -> list[int]:
        """Shrink the larger buffer until the config meets the budget(s)."""
        g = [int(x) for x in genes]
        while not self.feasible(self.decode(g)):
            if g[0] == 0 and g[1] == 0:
                raise ValueError(f"no config of {self} meets its budget")
            if (self.sp_kib[g[0]] >= self.acc_kib[g[1]] and g[0] > 0) or g[1] == 0:
                g[0] -= 1
            else:
                g[1] -= 1
        return g


DEFAULT_HW_SPACE = HwSearchSpace()

HW_PRESETS: dict[str, GemminiConfig] = {c.name: c for c in DEFAULT_HW_SPACE.configs()}
HW_PRESETS.setdefault("gemmini-64k-256k", GemminiConfig(sp_kib=64, acc_kib=256))
HW_PRESETS.setdefault("gemmini-256k-64k", GemminiConfig())
THESIS_HW = "gemmini-64k-256k"
STOCK_HW = "gemmini-256k-64k"

# ---- per-access energies (Accelergy 0.4 ERT, CACTI 7 @ 40 nm; GEMMINI_MODEL.md) ----------
# Scratchpad: one 128-bit (16 x int8) access, by total size.
_SP_KIB = np.array([32, 64, 128, 256, 512], dtype=float)
_SP_READ = np.array([16.76, 28.82, 41.49, 62.51, 82.38])
_SP_WRITE = np.array([22.32, 27.03, 38.21, 51.79, 71.66])
_SP_AREA = np.array([0.077, 0.180, 0.327, 0.701, 1.420])
# Accumulator: one 32-bit access of one column instance, by per-instance size (KiB).
_ACC_INST_KIB = np.array([2, 4, 8, 16, 32], dtype=float)
_ACC_READ = np.array([2.769, 4.238, 5.784, 9.365, 13.689])
_ACC_WRITE = np.array([2.954, 4.042, 5.471, 7.604, 10.316])
_ACC_AREA = np.array([0.284, 0.502, 0.835, 1.567, 2.757])  # all 16 instances

# One PE (8-bit MAC, its weight registers and pipeline registers) at 40 nm: DOSA's
# Accelergy area (`target.area` of ucb-bar/dosa's FireSim tables, Timeloop/Accelergy ART
# with CACTI and Aladdin) of 13 Gemmini configs minus the CACTI SRAM areas above, dominated
# by its 128x128 config (16.11 mm^2, 9.56 of them SRAM: 400 um^2 per PE); its 16x16 configs
# give 221-645 um^2 per PE (interpolation error of non-power-of-two SRAMs). Checked by
# tests/test_hw_gemmini.py when ../shared/firesim is present.
PE_AREA_MM2 = 400e-6

DRAM_PJ_PER_BYTE = 64.0  # 8 pJ/bit LPDDR4 (4096 pJ per 64-byte access)
MAC_PJ = 0.845  # 8-bit intmac, Aladdin, mac_random
REG_PJ = 0.072  # 8-bit weight register read or write


def _loglog(x, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Interpolate y(x) linearly in (log x, log y); outside the table, extend the power law
    of the two nearest points (e.g. 16 KiB from 32 and 64 KiB), which keeps energy per
    access positive and increasing in size, as CACTI's is."""
    lx = np.log(np.asarray(x, dtype=float))
    lxs, lys = np.log(xs), np.log(ys)
    y = np.interp(lx, lxs, lys)
    lo = lx < lxs[0]
    hi = lx > lxs[-1]
    s_lo = (lys[1] - lys[0]) / (lxs[1] - lxs[0])
    s_hi = (lys[-1] - lys[-2]) / (lxs[-1] - lxs[-2])
    y = np.where(lo, lys[0] + s_lo * (lx - lxs[0]), y)
    y = np.where(hi, lys[-1] + s_hi * (lx - lxs[-1]), y)
    return np.exp(y)


def sp_access_pj(sp_kib, *, write: bool = False, row_bytes: int = 16):
    """Energy (pJ) of one scratchpad row access of `row_bytes` (per-byte energy taken from
    the 128-bit CACTI table, so wider rows scale linearly)."""
    e = _loglog(sp_kib, _SP_KIB, _SP_WRITE if write else _SP_READ)
    return e * (row_bytes / 16.0)


def acc_access_pj(acc_kib, *, pe_cols: int = 16, write: bool = False):
    """Energy (pJ) of one 32-bit access to one accumulator column instance."""
    inst_kib = np.asarray(acc_kib, dtype=float) / pe_cols
    return _loglog(inst_kib, _ACC_INST_KIB, _ACC_WRITE if write else _ACC_READ)


def energy_table(cfg: GemminiConfig) -> dict[str, float]:
    """Per-access energies (pJ) of one config, per word (int8 for the scratchpad and DRAM,
    int32 for the accumulator)."""
    return {
        "mac": MAC_PJ,
        "reg": REG_PJ,
        "sp_read_word": float(sp_access_pj(cfg.sp_kib)) / 16.0,
        "sp_write_word": float(sp_access_pj(cfg.sp_kib, write=True)) / 16.0,
        "acc_read": float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols)),
        "acc_write": float(acc_access_pj(cfg.acc_kib, pe_cols=cfg.pe_cols, write=True)),
        "dram_word": DRAM_PJ_PER_BYTE,
    }
