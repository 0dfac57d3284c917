"""A real-Timeloop reference for the optimal regime's per-shape ordering of buffer configs.

Eight Gemmini buffer configs (16k, 64k and 512k scratchpads and accumulators among them) x
24 GEMM shapes, 12 from each preset (`cpu`, `paper`), costed by the project's own LUT job
(`python -m cosearch.build_lut --backend timeloop`: resumable, shape-major, so a stopped job
leaves whole shapes), then compared with the analytical model per shape: Spearman of the
configs' energy (and EDP) ordering, and energy MAPE. None of these shapes is in the
calibration fit (`lut/timeloop/calibration.csv`), so every one is held out.

    python experiments/cost_model_validation/timeloop_reference.py shapes   # writes the list
    nice -n 10 python experiments/cost_model_validation/timeloop_reference.py run \
        [--jobs 2] [--mapper-timeout-s 30] [--tools-note TEXT]               # resumable
    python experiments/cost_model_validation/timeloop_reference.py analyse  # metrics json
    python experiments/cost_model_validation/timeloop_reference.py check-shared
        # ../shared/timeloop/luts rows vs this machine's runs (results/shared_lut_check.*)

Needs Timeloop v3 and Accelergy on PATH for `run` only (never installed by this project).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from cosearch.hw.calibrate import spearman
from cosearch.hw.cost_model import Calibration, gemm_cost
from cosearch.hw.gemmini import get_hw

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SHAPES = RESULTS / "timeloop_reference_shapes.csv"
TABLE = RESULTS / "timeloop_reference.csv"
METRICS = RESULTS / "timeloop_reference_metrics.json"
CALIBRATION = HERE.parents[1] / "lut" / "timeloop" / "calibration.csv"
CONFIGS = (
    "gemmini-16k-16k",
    "gemmini-16k-64k",
    "gemmini-16k-512k",
    "gemmini-64k-16k",
    "gemmini-64k-256k",
    "gemmini-256k-64k",
    "gemmini-512k-16k",
    "gemmini-512k-512k",
)
PER_PRESET = 12


def pick_shapes() -> list[tuple[str, str, int, int, int]]:
    """PER_PRESET shapes per preset, evenly spaced over its sorted Timeloop job shapes
    (calibration shapes excluded), interleaved cpu/paper so that a partial run covers both."""
    from cosearch.hw.build import LutJob

    with CALIBRATION.open() as f:
        fitted = {(int(r["M"]), int(r["K"]), int(r["N"])) for r in csv.DictReader(f)}
    picked: dict[str, list] = {}
    for preset in ("cpu", "paper"):
        job = LutJob(hws=(get_hw(CONFIGS[0]),), backend="timeloop", preset=preset)
        cand = [s for s in job.shapes() if tuple(s[1:]) not in fitted]
        idx = np.linspace(0, len(cand) - 1, PER_PRESET).round().astype(int)
        picked[preset] = [(preset, *cand[i]) for i in dict.fromkeys(idx.tolist())]
    out, seen = [], set()
    for a, b in zip(picked["cpu"], picked["paper"], strict=True):
        for s in (a, b):
            if tuple(s[2:]) not in seen:
                seen.add(tuple(s[2:]))
                out.append(s)
    return out


def write_shapes() -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with SHAPES.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["preset", "op", "M", "K", "N"])
        w.writerows(pick_shapes())
    print(SHAPES)


def run(extra: list[str]) -> int:
    from cosearch import build_lut

    if not SHAPES.exists():
        write_shapes()
    argv = ["--shapes", str(SHAPES), "--out", str(TABLE), "--hw", ",".join(CONFIGS)]
    return build_lut.main([*argv, "--backend", "timeloop", *extra])


def analyse() -> dict:
    """Per shape with all configs costed: Spearman (model vs Timeloop) over the configs'
    energy and EDP; energy and cycles MAPE over every row; which rows the wall cut."""
    with SHAPES.open() as f:
        preset_of = {
            (int(r["M"]), int(r["K"]), int(r["N"])): r["preset"] for r in csv.DictReader(f)
        }
    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    by: dict[tuple, dict] = {}
    err_e, err_e0, err_c, converged = [], [], [], []
    per_row = []
    for r in rows:
        shape = (int(r["M"]), int(r["K"]), int(r["N"]))
        cfg = get_hw(r["hw"])
        m = gemm_cost(*shape, cfg)
        mc, me = float(m["cycles"][0]), float(m["energy_pJ"][0])
        me0 = float(gemm_cost(*shape, cfg, calibration=Calibration())["energy_pJ"][0])
        tc, te = float(r["cycles"]), float(r["energy_pJ"])
        by.setdefault(shape, {})[r["hw"]] = (tc, te, mc, me)
        err_e.append(abs(me - te) / te)
        err_e0.append(abs(me0 - te) / te)
        err_c.append(abs(mc - tc) / tc)
        converged.append(tc <= mc * 1.001)
        per_row.append(
            {
                "shape": "x".join(map(str, shape)),
                "hw": r["hw"],
                "timeloop_energy_pJ": te,
                "model_energy_pJ": me,
                "model_energy_pJ_uncalibrated": me0,
                "model_over_timeloop_energy": me / te,
                "timeloop_cycles": tc,
                "model_cycles": mc,
                "wall_cut": int(r.get("wall_cut") or 0),
                "tries": int(r.get("tries") or 1),
            }
        )
    shapes = {}
    for shape, d in sorted(by.items()):
        if len(d) < len(CONFIGS):
            continue
        t = np.array([d[h] for h in CONFIGS])
        best_t, best_m = CONFIGS[int(np.argmin(t[:, 1]))], CONFIGS[int(np.argmin(t[:, 3]))]
        shapes["x".join(map(str, shape))] = {
            "preset": preset_of.get(shape, "?"),
            "energy_spearman": spearman(t[:, 3], t[:, 1]),
            "edp_spearman": spearman(t[:, 2] * t[:, 3], t[:, 0] * t[:, 1]),
            "cheapest_timeloop": best_t,
            "cheapest_model": best_m,
        }
    sp_e = [v["energy_spearman"] for v in shapes.values()]
    sp_d = [v["edp_spearman"] for v in shapes.values()]
    out = {
        "configs": list(CONFIGS),
        "rows": len(rows),
        "rows_wall_cut": sum(p["wall_cut"] for p in per_row),
        "complete_shapes": len(shapes),
        "shapes_listed": len(preset_of),
        "mean_energy_spearman": float(np.mean(sp_e)) if sp_e else None,
        "mean_edp_spearman": float(np.mean(sp_d)) if sp_d else None,
        "energy_mape": float(np.mean(err_e)) if err_e else None,
        "cycles_mape": float(np.mean(err_c)) if err_c else None,
        "energy_mape_uncalibrated": float(np.mean(err_e0)) if err_e0 else None,
        # rows where Timeloop's search reached the model's (exact) minimum cycles
        "rows_cycles_converged": int(np.sum(converged)),
        "energy_mape_cycles_converged": (
            float(np.mean(np.array(err_e)[converged])) if any(converged) else None
        ),
        "energy_mape_uncalibrated_cycles_converged": (
            float(np.mean(np.array(err_e0)[converged])) if any(converged) else None
        ),
        "cheapest_agrees": sum(
            v["cheapest_timeloop"] == v["cheapest_model"] for v in shapes.values()
        ),
        "per_shape": shapes,
        "per_row": per_row,
        "note": "every shape is held out: none is in lut/timeloop/calibration.csv, the only "
        "data the model's one energy factor was fitted on",
    }
    METRICS.write_text(json.dumps(out, indent=2) + "\n")
    return out


SHARED_LUTS = HERE.parents[2] / "shared" / "timeloop" / "luts"
CHECK = RESULTS / "shared_lut_check.csv"


def check_shared() -> dict:
    """The shared Timeloop LUT rows (../shared/timeloop/luts, made elsewhere by this
    project's job) against this machine's runs of the same shapes and settings
    (`shared_lut_check.csv`, made by `build_lut --shapes shared_lut_check_shapes.csv`),
    both against the model's exact optimum of the same mapspace (a lower bound of
    Timeloop's cycles): a row equal within 1 %, or both runs at or above the optimum with
    the better one kept, passes."""
    with CHECK.open() as f:
        mine = {(r["hw"], int(r["M"]), int(r["K"]), int(r["N"])): r for r in csv.DictReader(f)}
    out = []
    for hw in sorted({k[0] for k in mine}):
        with (SHARED_LUTS / f"{hw}.csv").open() as f:
            shared = {(int(r["M"]), int(r["K"]), int(r["N"])): r for r in csv.DictReader(f)}
        for key, r in sorted(mine.items()):
            if key[0] != hw or key[1:] not in shared:
                continue
            s = shared[key[1:]]
            m = gemm_cost(*key[1:], get_hw(hw))
            out.append(
                {
                    "hw": hw,
                    "shape": "x".join(map(str, key[1:])),
                    "model_cycles": float(m["cycles"][0]),
                    "model_energy_pJ": float(m["energy_pJ"][0]),
                    "shared_cycles": float(s["cycles"]),
                    "shared_energy_pJ": float(s["energy_pJ"]),
                    "shared_tries": int(s["tries"]),
                    "own_cycles": float(r["cycles"]),
                    "own_energy_pJ": float(r["energy_pJ"]),
                    "own_tries": int(r["tries"]),
                    "own_wall_cut": int(r.get("wall_cut") or 0),
                    "energy_own_over_shared": float(r["energy_pJ"]) / float(s["energy_pJ"]),
                    "cycles_own_over_shared": float(r["cycles"]) / float(s["cycles"]),
                }
            )
    res = {
        "rows": out,
        "equal_within_1pct": sum(
            abs(o["energy_own_over_shared"] - 1) <= 0.01
            and abs(o["cycles_own_over_shared"] - 1) <= 0.01
            for o in out
        ),
        "n": len(out),
    }
    (RESULTS / "shared_lut_check.json").write_text(json.dumps(res, indent=2) + "\n")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("step", choices=("shapes", "run", "analyse", "check-shared"))
    a, extra = p.parse_known_args(argv)
    if a.step == "shapes":
        write_shapes()
        return 0
    if a.step == "run":
        return run(extra)
    if a.step == "check-shared":
        print(json.dumps(check_shared(), indent=2))
        return 0
    res = analyse()
    print(json.dumps({k: v for k, v in res.items() if k not in ("per_shape", "per_row")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
