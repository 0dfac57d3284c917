"""Timeloop v3 + Accelergy backend: build the spec, run the tools, parse their output.

Owns the project's own Timeloop spec for Gemmini (architecture, compound components,
mapspace constraints, problem, mapper settings), written from a `GemminiConfig` following
../shared/timeloop/GEMMINI_MODEL.md (adapted from DOSA's real-Gemmini mapspace), running
`accelergy` (once per config) and `timeloop-mapper` (per GEMM), parsing
`timeloop-mapper.stats.txt`, and re-running rows that look unconverged with a harder
victory condition, keeping the best mapping. The tools must be on PATH: this project never
installs or builds them (see https://timeloop.csail.mit.edu and README).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from cosearch.errors import UserError
from cosearch.hw.gemmini import GemminiConfig

log = logging.getLogger(__name__)

MAPPER_BIN = "timeloop-mapper"
ACCELERGY_BIN = "accelergy"


class TimeloopNotFound(RuntimeError):
    """timeloop-mapper or accelergy is not on PATH."""


@dataclass(frozen=True)
class MapperSettings:
    """Timeloop mapper settings (recorded in every LUT's metadata)."""

    algorithm: str = "random-pruned"
    optimization_metrics: tuple[str, ...] = ("delay", "energy")
    victory_condition: int = 5000
    timeout: int = 100000
    max_permutations_per_if_visit: int = 16
    num_threads: int = 2
    wall_timeout_s: float = 30.0  # then SIGINT: the mapper reports its best mapping so far
    harder_victory: int = 15000  # re-run of rows that look unconverged
    max_tries: int = 2  # runs per row at most (1 + re-runs)
    tolerance: float = 0.02  # cycles above the ideal by more than this -> re-run
    energy_tolerance: float = 0.25  # energy above the analytical optimum by more -> re-run

    def __post_init__(self) -> None:
        for name, flag in (
            ("victory_condition", "--victory"),
            ("harder_victory", "--harder-victory"),
            ("max_tries", "--max-tries"),
            ("num_threads", "--threads"),
            ("wall_timeout_s", "--mapper-timeout-s"),
        ):
            if not getattr(self, name) > 0:
                raise UserError(f"{flag} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TimeloopResult:
    cycles: float
    energy_pJ: float
    utilization: float
    computes: int
    fj_per_compute: dict[str, float]
    victory: int = 0
    tries: int = 1
    mapper_seconds: float = float("nan")


# ---- build ------------------------------------------------------------------------------
def _arch(cfg: GemminiConfig) -> dict:
    R, C = cfg.pe_rows, cfg.pe_cols
    sp_depth = cfg.sp_words // cfg.sp_block
    acc_depth = cfg.acc_words_per_col
    dram_bw = cfg.dram_bytes_per_cycle
    return {
        "architecture": {
            "version": 0.3,
            "subtree": [
                {
                    "name": "System",
                    "attributes": {
                        "technology": "40nm",
                        "global_cycle_seconds": 1e-9 / cfg.clock_ghz,
                        "datawidth": 8,
                    },
                    "local": [
                        {
                            "name": "DRAM",
                            "class": "DRAM",
                            "attributes": {
                                "type": "LPDDR4",
                                "width": 512,
                                "block-size": 64,
                                "word-bits": 8,
                                "datawidth": 8,
                                "shared_bandwidth": dram_bw,
                            },
                        }
                    ],
                    "subtree": [
                        {
                            "name": "Chip",
                            "attributes": {"technology": "40nm"},
                            "local": [
                                {
                                    "name": "Scratchpad",
                                    "class": "SRAM",
                                    "attributes": {
                                        "depth": sp_depth,
                                        "width": 8 * cfg.sp_block,
                                        "word-bits": 8,
                                        "block-size": cfg.sp_block,
                                        "n_banks": 1,
                                        "n_rdwr_ports": 1,
                                        "shared_bandwidth": 2 * C,
                                        "technology": "40nm",
                                    },
                                }
                            ],
                            "subtree": [
                                {
                                    "name": f"PECols[0..{C - 1}]",
                                    "local": [
                                        {
                                            "name": "Accumulator",
                                            "class": "SRAM",
                                            "attributes": {
                                                "depth": acc_depth,
                                                "width": 32,
                                                "word-bits": 32,
                                                "block-size": 1,
                                                "n_banks": 2,
                                                "n_rdwr_ports": 2,
                                                "shared_bandwidth": 2,
                                                "technology": "40nm",
                                            },
                                        }
                                    ],
                                    "subtree": [
                                        {
                                            "name": f"PERows[0..{R - 1}]",
                                            "local": [
                                                {
                                                    "name": "Registers",
                                                    "class": "reg_storage",
                                                    "attributes": {
                                                        "depth": 1,
                                                        "width": 8,
                                                        "word-bits": 8,
                                                        "block-size": 1,
                                                        "technology": "40nm",
                                                    },
                                                },
                                                {
                                                    "name": "MACC",
                                                    "class": "intmac",
                                                    "attributes": {
                                                        "datawidth": 8,
                                                        "technology": "40nm",
                                                    },
                                                },
                                            ],
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    }


def _components() -> dict:
    """`reg_storage`: 8 Aladdin `reg` bits per weight register (GEMMINI_MODEL.md)."""
    bits = "storage[0..width*depth-1]"
    acts = [
        {"name": a, "subcomponents": [{"name": bits, "actions": [{"name": a}]}]}
        for a in ("read", "write", "update")
    ]
    return {
        "compound_components": {
            "version": 0.3,
            "classes": [
                {
                    "name": "reg_storage",
                    "attributes": {"technology": "40nm", "latency": "1ns", "width": 8, "depth": 1},
                    "subcomponents": [
                        {
                            "name": bits,
                            "class": "reg",
                            "attributes": {"technology": "technology", "latency": "latency"},
                        }
                    ],
                    "actions": acts,
                }
            ],
        }
    }


def _constraints(cfg: GemminiConfig) -> dict:
    """DOSA `mapspace_real_gemmini`: WS with one weight per PE, outputs in the accumulator
    (P innermost), C spatial over PE rows and K (GEMM N) over PE columns, inputs and
    weights in the scratchpad with no temporal loops of its own, free DRAM loops."""
    R, C = cfg.pe_rows, cfg.pe_cols
    return {
        "mapspace_constraints": [
            {
                "target": "Registers",
                "type": "bypass",
                "keep": ["Weights"],
                "bypass": ["Inputs", "Outputs"],
            },
            {
                "target": "Accumulator",
                "type": "bypass",
                "keep": ["Outputs"],
                "bypass": ["Weights", "Inputs"],
            },
            {
                "target": "Scratchpad",
                "type": "bypass",
                "keep": ["Inputs", "Weights"],
                "bypass": ["Outputs"],
            },
            {
                "target": "DRAM",
                "type": "bypass",
                "keep": ["Weights", "Inputs", "Outputs"],
                "bypass": [],
            },
            {
                "target": "Registers",
                "type": "temporal",
                "factors": "R=1 S=1 C=1 K=1 N=1 Q=1 P=1",
                "permutation": "PQRSCKN",
            },
            {
                "target": "Accumulator",
                "type": "spatial",
                "factors": f"R=1 S=1 P=1 Q=1 C<={R} K=1 N=1",
                "permutation": "QKC",
            },
            {"target": "Accumulator", "type": "temporal", "permutation": "PQNCRSK"},
            {
                "target": "Scratchpad",
                "type": "spatial",
                "factors": f"R=1 S=1 P=1 Q=1 N=1 C=1 K<={C}",
            },
            {"target": "Scratchpad", "type": "temporal", "factors": "R=1 S=1 P=1 Q=1 C=1 K=1 N=1"},
            {"target": "DRAM", "type": "temporal"},
        ]
    }


def _problem(M: int, K: int, N: int) -> dict:
    """GEMM (M x K) @ (K x N) as a 1x1 convolution: P=M, C=K, K=N."""
    return {
        "problem": {
            "shape": {
                "name": "CNN-Layer",
                "dimensions": ["R", "S", "P", "Q", "C", "K", "N"],
                "coefficients": [
                    {"name": "Wstride", "default": 1},
                    {"name": "Hstride", "default": 1},
                    {"name": "Wdilation", "default": 1},
                    {"name": "Hdilation", "default": 1},
                ],
                "data-spaces": [
                    {"name": "Weights", "projection": [[["C"]], [["K"]], [["R"]], [["S"]]]},
                    {
                        "name": "Inputs",
                        "projection": [
                            [["N"]],
                            [["C"]],
                            [["R", "Wdilation"], ["P", "Wstride"]],
                            [["S", "Hdilation"], ["Q", "Hstride"]],
                        ],
                    },
                    {
                        "name": "Outputs",
                        "projection": [[["N"]], [["K"]], [["Q"]], [["P"]]],
                        "read-write": True,
                    },
                ],
            },
            "instance": {"R": 1, "S": 1, "P": int(M), "Q": 1, "C": int(K), "K": int(N), "N": 1},
        }
    }


def _mapper(s: MapperSettings, victory: int | None = None) -> dict:
    return {
        "mapper": {
            "algorithm": s.algorithm,
            "optimization-metrics": list(s.optimization_metrics),
            "num-threads": s.num_threads,
            "timeout": s.timeout,
            "victory-condition": s.victory_condition if victory is None else victory,
            "max-permutations-per-if-visit": s.max_permutations_per_if_visit,
            "live-status": False,
        }
    }


def build_spec(
    cfg: GemminiConfig,
    M: int,
    K: int,
    N: int,
    settings: MapperSettings = MapperSettings(),
    victory: int | None = None,
) -> dict[str, dict]:
    """The input files of one mapper run: file name -> YAML document."""
    return {
        "arch.yaml": _arch(cfg),
        "components.yaml": _components(),
        "constraints.yaml": _constraints(cfg),
        "problem.yaml": _problem(M, K, N),
        "mapper.yaml": _mapper(settings, victory),
    }


def spec_hash(cfg: GemminiConfig, settings: MapperSettings = MapperSettings()) -> str:
    """Hash of everything but the problem: identifies the hardware spec + mapper settings."""
    spec = build_spec(cfg, 1, 1, 1, settings)
    spec.pop("problem.yaml")
    blob = json.dumps({"spec": spec, "settings": settings.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_spec(spec: dict[str, dict], workdir: str | Path) -> list[Path]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in spec.items():
        p = workdir / name
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(p)
    return paths


# ---- run --------------------------------------------------------------------------------
def require_tools() -> None:
    missing = [b for b in (MAPPER_BIN, ACCELERGY_BIN) if shutil.which(b) is None]
    if missing:
        raise TimeloopNotFound(
            f"{', '.join(missing)} not found on PATH. --backend timeloop needs Timeloop v3 and "
            "Accelergy installed by you (https://timeloop.csail.mit.edu, "
            "https://github.com/Accelergy-Project); this project never installs them. "
            "Use --backend analytical otherwise."
        )


def tool_versions() -> dict[str, str]:
    """Versions reported by the tools (or 'not found')."""
    out = {}
    for b, args in ((MAPPER_BIN, ["--version"]), (ACCELERGY_BIN, ["--version"])):
        if shutil.which(b) is None:
            out[b] = "not found"
            continue
        try:
            r = subprocess.run([b, *args], capture_output=True, text=True, timeout=30)
            out[b] = (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr) else "?"
        except (OSError, subprocess.SubprocessError) as e:
            out[b] = f"error: {e}"
    return out


def run_accelergy(cfg: GemminiConfig, workdir: str | Path) -> Path:
    """ERT/ART for `cfg` (once per config; reused by every mapper run)."""
    require_tools()
    workdir = Path(workdir)
    if (workdir / "ERT.yaml").exists() and (workdir / "ART.yaml").exists():
        return workdir
    spec = build_spec(cfg, 1, 1, 1)
    files = write_spec({k: spec[k] for k in ("arch.yaml", "components.yaml")}, workdir)
    subprocess.run(
        [ACCELERGY_BIN, *map(str, files), "-o", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    return workdir


def run_mapper(workdir: str | Path, settings: MapperSettings = MapperSettings()) -> float:
    """Run timeloop-mapper in `workdir` (spec + ERT/ART there); SIGINT after the wall
    timeout so the mapper reports its best mapping. Returns the wall seconds."""
    require_tools()
    workdir = Path(workdir)
    files = ["arch.yaml", "constraints.yaml", "problem.yaml", "mapper.yaml", "ERT.yaml", "ART.yaml"]
    t0 = time.time()
    with (workdir / "mapper.log").open("w") as logf:
        p = subprocess.Popen(
            [MAPPER_BIN, *files], cwd=workdir, stdout=logf, stderr=subprocess.STDOUT
        )
        try:
            p.wait(timeout=settings.wall_timeout_s)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
    if not (workdir / "timeloop-mapper.stats.txt").exists():
        raise RuntimeError(f"timeloop-mapper wrote no stats in {workdir}; see mapper.log there")
    return time.time() - t0


# ---- parse ------------------------------------------------------------------------------
_SUMMARY = re.compile(r"^Summary Stats\s*\n-+\s*\n(.*)", re.S | re.M)


def parse_stats(text: str) -> TimeloopResult:
    """Cycles, energy (pJ = Total fJ/Compute x Computes / 1000, the un-rounded figure),
    utilisation and per-component fJ/Compute from `timeloop-mapper.stats.txt`."""
    m = _SUMMARY.search(text)
    if not m:
        raise ValueError("no 'Summary Stats' section: not a timeloop-mapper.stats.txt?")
    summ = m.group(1)

    def num(pat: str) -> float:
        mm = re.search(pat, summ, re.M)
        if not mm:
            raise ValueError(f"'{pat}' not found in the Summary Stats of timeloop output")
        return float(mm.group(1))

    cycles = num(r"^Cycles:\s*([\d.eE+]+)")
    util = num(r"^Utilization:\s*([\d.eE+]+)")
    computes = int(num(r"^Computes\s*=\s*(\d+)"))
    fj = {}
    block = summ.split("fJ/Compute", 1)[1]
    for line in block.splitlines()[1:]:
        mm = re.match(r"^\s+(.+?)\s*=\s*([\d.eE+-]+)\s*$", line)
        if not mm:
            if line.strip():
                break
            continue
        fj[mm.group(1)] = float(mm.group(2))
    if "Total" not in fj:
        raise ValueError("no 'Total' fJ/Compute line in timeloop output")
    return TimeloopResult(
        cycles=cycles,
        energy_pJ=fj["Total"] * computes / 1000.0,
        utilization=util,
        computes=computes,
        fj_per_compute=fj,
    )


def parse_map(text: str) -> dict[str, list[tuple[str, int, bool]]]:
    """Loop nest of `timeloop-mapper.map.txt`: level name -> [(dim, bound, spatial)],
    outermost first."""
    levels: dict[str, list[tuple[str, int, bool]]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"^(\w+) \[", line)
        if head:
            current = head.group(1)
            levels[current] = []
            continue
        loop = re.match(r"^\|\s*for (\w+) in \[0:(\d+)\)( \(Spatial-[XY]\))?", line)
        if loop and current is not None:
            levels[current].append((loop.group(1), int(loop.group(2)), bool(loop.group(3))))
    if not levels:
        raise ValueError("no storage levels found: not a timeloop-mapper.map.txt?")
    return levels


def parse_output_dir(workdir: str | Path) -> TimeloopResult:
    return parse_stats((Path(workdir) / "timeloop-mapper.stats.txt").read_text())


# ---- one GEMM, with convergence check ---------------------------------------------------
def looks_unconverged(
    res: TimeloopResult, ideal_cycles: float, model_energy: float, s: MapperSettings
) -> bool:
    """Cycles above the array's ideal (the analytical model's exact optimum), or energy far
    above the analytical optimum: the random-pruned search stopped early."""
    return res.cycles > ideal_cycles * (1 + s.tolerance) or res.energy_pJ > model_energy * (
        1 + s.energy_tolerance
    )


def cost_gemm(
    cfg: GemminiConfig,
    M: int,
    K: int,
    N: int,
    workroot: str | Path,
    settings: MapperSettings = MapperSettings(),
) -> TimeloopResult:
    """Timeloop cost of one GEMM on `cfg`; re-run harder if unconverged, keep the best."""
    from cosearch.hw.cost_model import Calibration, gemm_cost

    ert_dir = run_accelergy(cfg, Path(workroot) / cfg.name / "_accelergy")
    ref = gemm_cost(M, K, N, cfg, calibration=Calibration())
    best: TimeloopResult | None = None
    victory = settings.victory_condition
    total_s = 0.0
    for attempt in range(settings.max_tries):
        wd = Path(workroot) / cfg.name / f"M{M}_K{K}_N{N}" / f"try{attempt}"
        write_spec(build_spec(cfg, M, K, N, settings, victory), wd)
        for f in ("ERT.yaml", "ART.yaml"):
            shutil.copy(ert_dir / f, wd / f)
        total_s += run_mapper(wd, replace(settings, victory_condition=victory))
        res = replace(parse_output_dir(wd), victory=victory)
        if best is None or (res.cycles, res.energy_pJ) < (best.cycles, best.energy_pJ):
            best = res
        if not looks_unconverged(
            best, float(ref["cycles"][0]), float(ref["energy_pJ"][0]), settings
        ):
            break
        log.info(
            "%s %dx%dx%d looks unconverged at victory %d; re-running at %d",
            cfg.name,
            M,
            K,
            N,
            victory,
            settings.harder_victory,
        )
        victory = settings.harder_victory
    assert best is not None
    return replace(best, tries=attempt + 1, mapper_seconds=total_s)
