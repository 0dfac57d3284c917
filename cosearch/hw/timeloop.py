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
import os
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
    """Timeloop mapper settings (recorded in every LUT's metadata).

    A row that looks unconverged is re-run with a harder victory condition: try k >= 1 runs
    at harder_victory x (harder_victory / victory_condition)^(k-1) (5000, 15000, 45000, ...)
    and its wall limit grows by the same factor, so a harder try really searches longer."""

    algorithm: str = "random-pruned"
    optimization_metrics: tuple[str, ...] = ("delay", "energy")
    victory_condition: int = 5000
    timeout: int = 100000
    max_permutations_per_if_visit: int = 16
    num_threads: int = 2
    wall_timeout_s: float = 30.0  # then SIGINT: the mapper reports its best mapping so far
    harder_victory: int = 15000  # first re-run of rows that look unconverged
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
        if self.max_tries > 1 and self.harder_victory <= self.victory_condition:
            raise UserError(
                f"--harder-victory ({self.harder_victory}) must exceed --victory "
                f"({self.victory_condition}): a re-run at the same victory condition searches "
                "no harder (or give --max-tries 1)"
            )

    def victory_for_try(self, k: int) -> int:
        if k == 0:
            return self.victory_condition
        ratio = self.harder_victory / self.victory_condition
        return round(self.harder_victory * ratio ** (k - 1))

    def wall_for_try(self, k: int) -> float:
        return self.wall_timeout_s * self.victory_for_try(k) / self.victory_condition

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
    wall_cut: bool = False  # the kept mapping's search was stopped by the wall limit


# ---- build ------------------------------------------------------------------------------
def clock_period(cfg: GemminiConfig) -> str:
    """The clock period as Accelergy's Aladdin plug-in reads `cycle_time` ('1ns' at 1 GHz).
    Without it on the MACC and the register bits the plug-in fails (KeyError) and Accelergy
    silently falls back to its 1 pJ placeholder: see `check_estimators`."""
    return f"{1.0 / cfg.clock_ghz:g}ns"


def _arch(cfg: GemminiConfig) -> dict:
    R, C = cfg.pe_rows, cfg.pe_cols
    sp_depth = cfg.sp_words // cfg.sp_block
    acc_depth = cfg.acc_words_per_col
    dram_bw = cfg.dram_bytes_per_cycle
    period = clock_period(cfg)
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
                                                        "cycle_time": period,
                                                    },
                                                },
                                                {
                                                    "name": "MACC",
                                                    "class": "intmac",
                                                    "attributes": {
                                                        "datawidth": 8,
                                                        "technology": "40nm",
                                                        "cycle_time": period,
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


def _components(cfg: GemminiConfig) -> dict:
    """`reg_storage`: 8 Aladdin `reg` bits per weight register (GEMMINI_MODEL.md), each
    given the clock period as `cycle_time` (the Aladdin plug-in needs it)."""
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
                    "attributes": {
                        "technology": "40nm",
                        "latency": "1ns",
                        "cycle_time": clock_period(cfg),
                        "width": 8,
                        "depth": 1,
                    },
                    "subcomponents": [
                        {
                            "name": bits,
                            "class": "reg",
                            "attributes": {
                                "technology": "technology",
                                "latency": "latency",
                                "cycle_time": "cycle_time",
                            },
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
        "components.yaml": _components(cfg),
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


TOOLS_NOTE_ENV = "COSEARCH_TOOLS_NOTE"

# The Python that runs `accelergy` lists its installed accelergy distributions (the tool
# and its plug-ins): their versions are the only ones Accelergy has.
_ACCELERGY_PACKAGES = (
    "import importlib.metadata as m, json; print(json.dumps({d.metadata['Name']: d.version "
    "for d in m.distributions() if (d.metadata['Name'] or '').lower().startswith('accelergy')}))"
)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _timeloop_libraries(binary: Path) -> dict[str, str]:
    """sha256 of the Timeloop shared libraries the mapper links (a dynamic build keeps
    the model there), by file name; empty for a static build or without `ldd`."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    libs = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s*(libtimeloop\S*)\s+=>\s+(\S+)", line)
        if m and Path(m.group(2)).is_file():
            libs[m.group(1)] = _sha256(m.group(2))
    return libs


def _accelergy_packages(script: Path) -> dict[str, str] | str:
    """{distribution: version} of accelergy and its plug-ins, asked of the interpreter
    named on the `accelergy` script's #! line (a message if that cannot be done)."""
    try:
        first = script.open("rb").readline().decode(errors="replace").strip()
    except OSError as e:
        return f"unreadable: {e.strerror}"
    if not first.startswith("#!"):
        return "unknown (accelergy is not a Python script)"
    try:
        r = subprocess.run(
            [*first[2:].split(), "-c", _ACCELERGY_PACKAGES],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return json.loads(r.stdout) if r.returncode == 0 else "unknown (interpreter failed)"
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown (interpreter failed)"


def tool_versions(note: str | None = None) -> dict:
    """What can be known of the tools that made a table. Neither tool reports a version
    (timeloop-mapper reads `--version` as an input file; accelergy has no such flag), so:
    the sha256 of the mapper executable and of the Timeloop libraries it links, the
    versions of the installed accelergy distributions (tool and plug-ins), and `note`, the
    versions and commits as the user states them (`build_lut --tools-note`, default
    $COSEARCH_TOOLS_NOTE), recorded verbatim. No paths: tables are shared."""
    out: dict = {}
    mapper = shutil.which(MAPPER_BIN)
    if mapper is None:
        out[MAPPER_BIN] = "not found"
    else:
        exe = Path(mapper).resolve()
        out[MAPPER_BIN] = {
            "reported": "none (timeloop-mapper has no version option)",
            "sha256": _sha256(exe),
            "libraries_sha256": _timeloop_libraries(exe),
        }
    acc = shutil.which(ACCELERGY_BIN)
    if acc is None:
        out[ACCELERGY_BIN] = "not found"
    else:
        out[ACCELERGY_BIN] = {
            "reported": "none (accelergy has no version option; its ERT's version is "
            "recorded per config under accelergy)",
            "packages": _accelergy_packages(Path(acc).resolve()),
        }
    note = note if note is not None else os.environ.get(TOOLS_NOTE_ENV)
    out["note"] = note or f"none given (build_lut --tools-note or ${TOOLS_NOTE_ENV})"
    return out


class AccelergyError(UserError):
    """Accelergy failed, or estimated a component with a placeholder: no table is built."""


# Accelergy's fallback when every real plug-in fails for a component: 1 pJ per action
# (`dummy_table`, accuracy 1 %). It still exits 0, so its output must be read.
PLACEHOLDER_ESTIMATOR = re.compile(r"dummy", re.I)


def accelergy_summary(workdir: str | Path) -> dict:
    """Which estimator Accelergy used per component, for energy (ERT_summary.yaml) and
    area (ART_summary.yaml), and the ERT's version (Accelergy writes its own)."""
    workdir = Path(workdir)
    out: dict = {"energy": {}, "area": {}}
    ert = yaml.safe_load((workdir / "ERT_summary.yaml").read_text())["ERT_summary"]
    for t in ert.get("table_summary", []):
        prims = t.get("primitive_estimation(s)") or []
        out["energy"][t["name"]] = "+".join(sorted({str(p.get("estimator")) for p in prims}))
    art_path = workdir / "ART_summary.yaml"
    if art_path.exists():
        for t in yaml.safe_load(art_path.read_text())["ART_summary"].get("table_summary", []):
            est = t.get("primitive_estimations")
            if isinstance(est, list):
                est = "+".join(sorted({str(p.get("estimator")) for p in est}))
            out["area"][t["name"]] = str(est)
    ert_full = workdir / "ERT.yaml"
    if ert_full.exists():
        out["ert_version"] = str(yaml.safe_load(ert_full.read_text())["ERT"].get("version"))
        out["ert_sha256"] = _sha256(ert_full)[:16]
    return out


def check_estimators(summary: dict, log_text: str = "", where: str = "") -> None:
    """Refuse a table whose energy or area came from Accelergy's placeholder estimator,
    naming the component and (from Accelergy's log) why the real plug-in failed."""
    for kind in ("energy", "area"):
        for comp, est in summary.get(kind, {}).items():
            if not PLACEHOLDER_ESTIMATOR.search(est):
                continue
            why = re.search(r"\|\s*(\S+) with accuracy \S+ estimating value: (.+)", log_text)
            reason = f" because {why.group(1)} failed ({why.group(2).strip()})" if why else ""
            raise AccelergyError(
                f"Accelergy estimated the {kind} of {comp} with its placeholder '{est}' "
                f"(1 pJ per action){reason}; refusing to build a Timeloop table on it: fix the "
                f"plug-ins or the spec's attributes (see accelergy.log{where})"
            )


def run_accelergy(cfg: GemminiConfig, workdir: str | Path) -> Path:
    """ERT/ART for `cfg` (once per config; reused by every mapper run), checked: a failed
    run or a component estimated by the placeholder is an AccelergyError."""
    require_tools()
    workdir = Path(workdir)
    where = f" in {workdir}"
    log_path = workdir / "accelergy.log"
    done = all((workdir / f).exists() for f in ("ERT.yaml", "ART.yaml", "ERT_summary.yaml"))
    if not done:
        spec = build_spec(cfg, 1, 1, 1)
        files = write_spec({k: spec[k] for k in ("arch.yaml", "components.yaml")}, workdir)
        r = subprocess.run(
            [ACCELERGY_BIN, *map(str, files), "-o", str(workdir)],
            capture_output=True,
            text=True,
            cwd=workdir,
        )
        log_path.write_text(r.stdout + r.stderr)
        if r.returncode != 0 or not (workdir / "ERT_summary.yaml").exists():
            raise AccelergyError(
                f"accelergy failed on {cfg.name} (exit code {r.returncode}); see "
                f"accelergy.log{where}"
            )
    log_text = log_path.read_text() if log_path.exists() else ""
    check_estimators(accelergy_summary(workdir), log_text, where)
    return workdir


_MAPPER_OUTPUTS = ("timeloop-mapper.stats.txt", "timeloop-mapper.map.txt", "mapper.log")


def run_mapper(
    workdir: str | Path, settings: MapperSettings = MapperSettings(), wall_s: float | None = None
) -> tuple[float, bool]:
    """Run timeloop-mapper in `workdir` (spec + ERT/ART there); SIGINT after `wall_s`
    (default the settings' wall limit) so the mapper reports its best mapping so far.
    Returns (wall seconds, whether the wall limit cut the search)."""
    require_tools()
    workdir = Path(workdir)
    for f in _MAPPER_OUTPUTS:  # a rerun in the same work dir must not read old output
        (workdir / f).unlink(missing_ok=True)
    files = ["arch.yaml", "constraints.yaml", "problem.yaml", "mapper.yaml", "ERT.yaml", "ART.yaml"]
    wall_s = settings.wall_timeout_s if wall_s is None else wall_s
    cut = False
    t0 = time.time()
    with (workdir / "mapper.log").open("w") as logf:
        p = subprocess.Popen(
            [MAPPER_BIN, *files], cwd=workdir, stdout=logf, stderr=subprocess.STDOUT
        )
        try:
            p.wait(timeout=wall_s)
        except subprocess.TimeoutExpired:
            cut = True
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
        except BaseException:  # the job is interrupted: stop the mapper with it
            p.kill()
            p.wait()
            raise
    if not (workdir / "timeloop-mapper.stats.txt").exists():
        raise RuntimeError(
            f"timeloop-mapper wrote no stats in {workdir} (exit code {p.returncode}); see "
            "mapper.log there"
        )
    return time.time() - t0, cut


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
    """Timeloop cost of one GEMM on `cfg`; re-run harder while unconverged (up to
    `max_tries`, see MapperSettings), keep the best mapping."""
    from cosearch.hw.cost_model import Calibration, gemm_cost

    ert_dir = run_accelergy(cfg, Path(workroot) / cfg.name / "_accelergy")
    ref = gemm_cost(M, K, N, cfg, calibration=Calibration())
    best: TimeloopResult | None = None
    total_s = 0.0
    for attempt in range(settings.max_tries):
        victory = settings.victory_for_try(attempt)
        wd = Path(workroot) / cfg.name / f"M{M}_K{K}_N{N}" / f"try{attempt}"
        write_spec(build_spec(cfg, M, K, N, settings, victory), wd)
        for f in ("ERT.yaml", "ART.yaml"):
            shutil.copy(ert_dir / f, wd / f)
        secs, cut = run_mapper(wd, settings, settings.wall_for_try(attempt))
        total_s += secs
        res = replace(parse_output_dir(wd), victory=victory, wall_cut=cut)
        if best is None or (res.cycles, res.energy_pJ) < (best.cycles, best.energy_pJ):
            best = res
        if not looks_unconverged(
            best, float(ref["cycles"][0]), float(ref["energy_pJ"][0]), settings
        ):
            break
        if attempt + 1 < settings.max_tries:
            log.info(
                "%s %dx%dx%d looks unconverged at victory %d%s; re-running at %d",
                cfg.name,
                M,
                K,
                N,
                victory,
                " (cut by the wall limit)" if cut else "",
                settings.victory_for_try(attempt + 1),
            )
        else:
            log.info(
                "%s %dx%dx%d still looks unconverged after %d tries (last victory %d%s); "
                "keeping the best mapping",
                cfg.name,
                M,
                K,
                N,
                attempt + 1,
                victory,
                ", cut by the wall limit" if cut else "",
            )
    assert best is not None
    return replace(best, tries=attempt + 1, mapper_seconds=total_s)
