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
    nice -n 10 python experiments/cost_model_validation/timeloop_reference.py pinned \
        --workdir DIR   # model cheaper than the random search: Timeloop on the model's mapping
    python experiments/cost_model_validation/timeloop_reference.py misses --workdir DIR
        # rows where Timeloop beat the model's optimum: the model costs Timeloop's mapping
        # (read from DIR's map.txt) -> results/timeloop_model_misses.csv
    python experiments/cost_model_validation/timeloop_reference.py tolerance
        # what a delay tolerance before energy decides would move (not shipped)
    python experiments/cost_model_validation/timeloop_reference.py acc-port
        # the model's cycles of one mapping vs Timeloop's, before and after the
        # accumulator-port fix (results/timeloop_acc_port.csv)
    python experiments/cost_model_validation/timeloop_reference.py lut-vs-model
        # lut/cpu/timeloop rows vs the model (results/timeloop_lut_vs_model.json)
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


def _metrics(rows: list[dict], preset_of: dict) -> dict:
    """Spearman per complete shape and MAPEs, for rows with Timeloop's (cycles, energy)."""
    by: dict[tuple, dict] = {}
    err_e, err_e0, err_c, converged = [], [], [], []
    for r in rows:
        shape = (r["M"], r["K"], r["N"])
        tc, te, mc, me, me0 = r["tc"], r["te"], r["mc"], r["me"], r["me0"]
        by.setdefault(shape, {})[r["hw"]] = (tc, te, mc, me)
        err_e.append(abs(me - te) / te)
        err_e0.append(abs(me0 - te) / te)
        err_c.append(abs(mc - tc) / tc)
        converged.append(tc <= mc * 1.001)
    shapes = {}
    for shape, d in sorted(by.items()):
        if len(d) < len(CONFIGS):
            continue
        t = np.array([d[h] for h in CONFIGS])
        shapes["x".join(map(str, shape))] = {
            "preset": preset_of.get(shape, "?"),
            "energy_spearman": spearman(t[:, 3], t[:, 1]),
            "edp_spearman": spearman(t[:, 2] * t[:, 3], t[:, 0] * t[:, 1]),
            "cheapest_timeloop": CONFIGS[int(np.argmin(t[:, 1]))],
            "cheapest_model": CONFIGS[int(np.argmin(t[:, 3]))],
        }
    sp_e = [v["energy_spearman"] for v in shapes.values()]
    sp_d = [v["edp_spearman"] for v in shapes.values()]
    conv = np.array(converged, dtype=bool)

    def mean(x, mask=None):
        x = np.asarray(x, dtype=float)
        x = x if mask is None else x[mask]
        return float(np.mean(x)) if len(x) else None

    return {
        "rows": len(rows),
        "complete_shapes": len(shapes),
        "mean_energy_spearman": mean(sp_e),
        "min_energy_spearman": float(min(sp_e)) if sp_e else None,
        "mean_edp_spearman": mean(sp_d),
        "cheapest_agrees": sum(
            v["cheapest_timeloop"] == v["cheapest_model"] for v in shapes.values()
        ),
        "energy_mape": mean(err_e),
        "energy_mape_uncalibrated": mean(err_e0),
        "cycles_mape": mean(err_c),
        # rows where Timeloop reached the model's (exact) minimum cycles
        "rows_cycles_converged": int(conv.sum()),
        "energy_mape_cycles_converged": mean(err_e, conv),
        "energy_mape_uncalibrated_cycles_converged": mean(err_e0, conv),
        "per_shape": shapes,
    }


def analyse() -> dict:
    """Model vs Timeloop on the reference: (a) Timeloop's random search as the LUT job ran
    it; (b) Timeloop's best evaluation, the better (delay first, then energy) of that search
    and of Timeloop run on the model's mapping (`pinned`), both real Timeloop costs of valid
    mappings of the same mapspace. Per complete shape: Spearman over the configs' energy
    and EDP, the cheapest config; over rows: energy and cycles MAPE."""
    with SHAPES.open() as f:
        preset_of = {
            (int(r["M"]), int(r["K"]), int(r["N"])): r["preset"] for r in csv.DictReader(f)
        }
    with TABLE.open() as f:
        table = list(csv.DictReader(f))
    pins: dict[tuple, list[dict]] = {}  # every pinned mapping of a row (model versions)
    if PINNED.exists():
        with PINNED.open() as f:
            for r in csv.DictReader(f):
                pins.setdefault((r["hw"], int(r["M"]), int(r["K"]), int(r["N"])), []).append(r)
    random_rows, best_rows, per_row = [], [], []
    for r in table:
        M, K, N = int(r["M"]), int(r["K"]), int(r["N"])
        cfg = get_hw(r["hw"])
        m = gemm_cost(M, K, N, cfg)
        me0 = float(gemm_cost(M, K, N, cfg, calibration=Calibration())["energy_pJ"][0])
        base = {"hw": r["hw"], "M": M, "K": K, "N": N, "mc": float(m["cycles"][0])}
        base.update(me=float(m["energy_pJ"][0]), me0=me0)
        rnd = (float(r["cycles"]), float(r["energy_pJ"]))
        best = min(
            [rnd]
            + [
                (float(p["pinned_cycles"]), float(p["pinned_energy_pJ"]))
                for p in pins.get((r["hw"], M, K, N), [])
            ]
        )
        random_rows.append({**base, "tc": rnd[0], "te": rnd[1]})
        best_rows.append({**base, "tc": best[0], "te": best[1]})
        per_row.append(
            {
                "shape": f"{M}x{K}x{N}",
                "hw": r["hw"],
                "random_cycles": rnd[0],
                "random_energy_pJ": rnd[1],
                "best_cycles": best[0],
                "best_energy_pJ": best[1],
                "best_from": "random" if best == rnd else "pinned",
                "model_cycles": base["mc"],
                "model_energy_pJ": base["me"],
                "model_energy_pJ_uncalibrated": me0,
                "wall_cut": int(r.get("wall_cut") or 0),
                "tries": int(r.get("tries") or 1),
            }
        )
    out = {
        "configs": list(CONFIGS),
        "shapes_listed": len(preset_of),
        "rows": len(table),
        "rows_wall_cut": sum(p["wall_cut"] for p in per_row),
        "rows_pinned": len(pins),
        "rows_best_from_pinned": sum(p["best_from"] == "pinned" for p in per_row),
        "random_search": _metrics(random_rows, preset_of),
        "timeloop_best": _metrics(best_rows, preset_of),
        "per_row": per_row,
        "note": "every shape is held out: none is in lut/timeloop/calibration.csv, the only "
        "Timeloop data an energy factor was ever fitted on (the shipped model has none)",
    }
    METRICS.write_text(json.dumps(out, indent=2) + "\n")
    return out


PINNED = RESULTS / "timeloop_pinned.csv"
LUT_DIR = HERE.parents[1] / "lut" / "cpu" / "timeloop"


def lut_vs_model() -> dict:
    """The committed real-Timeloop LUT rows (lut/cpu/timeloop) against the model: MAPE of
    cycles and energy, how many rows Timeloop's search ended at the model's exact cycles,
    and the thesis-vs-stock energy ordering over the shapes both tables hold."""
    out: dict = {}
    tables = {}
    for path in sorted(LUT_DIR.glob("*.csv")):
        with path.open() as f:
            rows = list(csv.DictReader(f))
        tables[path.stem] = {(int(r["M"]), int(r["K"]), int(r["N"])): r for r in rows}
        ec, ee, ee0, conv = [], [], [], []
        for r in rows:
            shape, cfg = (int(r["M"]), int(r["K"]), int(r["N"])), get_hw(r["hw"])
            m = gemm_cost(*shape, cfg)
            m0 = gemm_cost(*shape, cfg, calibration=Calibration())
            tc, te = float(r["cycles"]), float(r["energy_pJ"])
            ec.append(abs(float(m["cycles"][0]) - tc) / tc)
            ee.append(abs(float(m["energy_pJ"][0]) - te) / te)
            ee0.append(abs(float(m0["energy_pJ"][0]) - te) / te)
            conv.append(tc <= float(m["cycles"][0]) * 1.001)
        c = np.array(conv, dtype=bool)
        out[path.stem] = {
            "rows": len(rows),
            "rows_wall_cut": sum(int(r.get("wall_cut") or 0) for r in rows),
            "cycles_mape": float(np.mean(ec)),
            "energy_mape": float(np.mean(ee)),
            "energy_mape_uncalibrated": float(np.mean(ee0)),
            "rows_at_model_cycles": int(c.sum()),
            "energy_mape_uncalibrated_at_model_cycles": float(np.mean(np.array(ee0)[c]))
            if c.any()
            else None,
        }
    if {"gemmini-64k-256k", "gemmini-256k-64k"} <= set(tables):
        a, b = tables["gemmini-64k-256k"], tables["gemmini-256k-64k"]
        common = sorted(set(a) & set(b))
        agree = 0
        for s in common:
            tl = float(a[s]["energy_pJ"]) < float(b[s]["energy_pJ"])
            md = float(gemm_cost(*s, get_hw("gemmini-64k-256k"))["energy_pJ"][0]) < float(
                gemm_cost(*s, get_hw("gemmini-256k-64k"))["energy_pJ"][0]
            )
            agree += tl == md
        out["thesis_vs_stock_energy_order_agrees"] = f"{agree} of {len(common)} shapes"
    (RESULTS / "timeloop_lut_vs_model.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def model_mapping(
    M: int, K: int, N: int, hw: str, tol: float = 1e-6
) -> tuple[float, float, int, int, int, str]:
    """The model's optimum as an explicit mapping (cycles, energy uncalibrated, DRAM trips
    p over M, c over K, n over N, innermost DRAM loop), by brute force over the same
    mapspace: every divisor triple whose tiles fit (inputs + weights in the scratchpad,
    the output tile in the accumulator), delay first, then energy among the mappings
    within `tol` of the least delay."""
    from cosearch.hw.cost_model import mapping_cost

    cfg = get_hw(hw)

    def divs(v: int) -> list[int]:
        return [d for d in range(1, v + 1) if v % d == 0]

    Cs = max(d for d in divs(K) if d <= cfg.pe_rows)
    Ks = max(d for d in divs(N) if d <= cfg.pe_cols)
    cands = []
    for p in divs(M):
        for c in divs(K // Cs):
            for n in divs(N // Ks):
                Pt, Ct, Nt = M // p, K // c, N // n
                if Ct * (Pt + Nt) > cfg.sp_words or Pt * Nt / Ks > cfg.acc_words_per_col:
                    continue
                for inner in "PCN":
                    r = mapping_cost(M, K, N, hw, p=p, c=c, n=n, inner=inner)
                    cands.append((r["cycles"], r["energy_pJ"], p, c, n, inner))
    cmin = min(x[0] for x in cands)
    return min((x for x in cands if x[0] <= cmin * (1 + tol)), key=lambda x: x[1])


TOLERANCE = RESULTS / "timeloop_delay_tolerance.json"


def tolerance(tols: list[float]) -> dict:
    """What a delay tolerance would move (not the shipped model, which takes the least
    delay): per tolerance, the brute-force model pick (`model_mapping`) of every reference
    row against Timeloop's best evaluation, uncalibrated energy, same metrics as
    `analyse`."""
    best = {(r["hw"], r["shape"]): r for r in analyse()["per_row"]}
    with SHAPES.open() as f:
        preset_of = {
            (int(r["M"]), int(r["K"]), int(r["N"])): r["preset"] for r in csv.DictReader(f)
        }
    res = {"note": __doc__.split("\n")[0], "tolerances": {}}
    for tol in tols:
        rows = []
        for (hw, shape), b in best.items():
            M, K, N = map(int, shape.split("x"))
            mc, me, *_ = model_mapping(M, K, N, hw, tol)
            rows.append(
                {"hw": hw, "M": M, "K": K, "N": N, "mc": mc, "me": me, "me0": me}
                | {"tc": b["best_cycles"], "te": b["best_energy_pJ"]}
            )
        m = _metrics(rows, preset_of)
        m.pop("per_shape", None)
        res["tolerances"][str(tol)] = m
        print(tol, {k: v for k, v in m.items() if "spearman" in k or "mape" in k}, flush=True)
    res["note"] = (
        "the brute-force model (model_mapping) with energy deciding among mappings within "
        "each tolerance of the least delay, vs Timeloop's best evaluation; uncalibrated energy"
    )
    TOLERANCE.write_text(json.dumps(res, indent=2) + "\n")
    return res


def pinned(workdir: Path, wall_s: float, threshold: float = 0.05) -> list[dict]:
    """Rows where the model is cheaper than Timeloop's random search (energy by more than
    `threshold`, or fewer cycles): Timeloop run again with its DRAM-level loops pinned to
    the model's mapping (factors and innermost loop; the mapper still picks the rest).
    Resumable; keyed by row and mapping, so a model change that moves a pick adds a run
    (`analyse` takes the best of all of a row's Timeloop evaluations).
    Timeloop's own cost of that mapping tells a model error (pinned >= random) from an
    unconverged random search (pinned < random)."""
    from cosearch.hw import timeloop

    with TABLE.open() as f:
        rows = list(csv.DictReader(f))
    done = set()  # (row, mapping) pairs run: a model change that moves a pick runs again
    if PINNED.exists():
        with PINNED.open() as f:
            done = {
                (r["hw"], int(r["M"]), int(r["K"]), int(r["N"]))
                + (int(r["p"]), int(r["c"]), int(r["n"]), r["inner"])
                for r in csv.DictReader(f)
            }
    settings = timeloop.MapperSettings(max_tries=1, wall_timeout_s=wall_s)
    out = []
    for r in rows:
        M, K, N = int(r["M"]), int(r["K"]), int(r["N"])
        mc, me, p, c, n, inner = model_mapping(M, K, N, r["hw"])
        if (r["hw"], M, K, N, p, c, n, inner) in done:
            continue
        tc, te = float(r["cycles"]), float(r["energy_pJ"])
        if not (me < te * (1 - threshold) or mc < tc * (1 - 1e-6)):
            continue
        cfg = get_hw(r["hw"])
        ert = timeloop.run_accelergy(cfg, workdir / cfg.name / "_accelergy")
        wd = workdir / cfg.name / f"M{M}_K{K}_N{N}" / "pinned"
        spec = timeloop.build_spec(cfg, M, K, N, settings)
        tl_inner = {"P": "P", "C": "C", "N": "K"}[inner]  # GEMM N is Timeloop's K
        for cons in spec["constraints.yaml"]["mapspace_constraints"]:
            if cons["target"] == "DRAM" and cons["type"] == "temporal":
                cons["factors"] = f"R=1 S=1 Q=1 N=1 P={p} C={c} K={n}"
                cons["permutation"] = tl_inner + "".join(d for d in "PCK" if d != tl_inner)
        timeloop.write_spec(spec, wd)
        for f in ("ERT.yaml", "ART.yaml"):
            (wd / f).write_bytes((ert / f).read_bytes())
        secs, cut = timeloop.run_mapper(wd, settings)
        res = timeloop.parse_output_dir(wd)
        out.append(
            {
                "hw": r["hw"],
                "M": M,
                "K": K,
                "N": N,
                "p": p,
                "c": c,
                "n": n,
                "inner": inner,
                "model_cycles": mc,
                "model_energy_pJ_uncalibrated": me,
                "random_cycles": tc,
                "random_energy_pJ": te,
                "random_victory": r["victory"],
                "random_wall_cut": r.get("wall_cut", ""),
                "pinned_cycles": res.cycles,
                "pinned_energy_pJ": res.energy_pJ,
                "pinned_mapper_seconds": round(secs, 2),
                "pinned_wall_cut": int(cut),
            }
        )
        new = not PINNED.exists()
        with PINNED.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out[-1]))
            if new:
                w.writeheader()
            w.writerow(out[-1])
        print(out[-1], flush=True)
    return out


MISSES = RESULTS / "timeloop_model_misses.csv"


def _dram_loops(map_txt: str) -> tuple[int, int, int, str]:
    """(p, c, n, innermost) of the DRAM level of a timeloop-mapper.map.txt (Timeloop's K is
    the GEMM's N)."""
    import re

    dram = map_txt.split("DRAM [", 1)[1].split("Scratchpad [", 1)[0]
    loops = re.findall(r"for (\w) in \[0:(\d+)\)", dram)
    f = {"P": 1, "C": 1, "K": 1}
    for dim, v in loops:
        f[dim] *= int(v)
    inner = {"P": "P", "C": "C", "K": "N"}[loops[-1][0]] if loops else "C"
    return f["P"], f["C"], f["K"], inner


def misses(workdirs: list[Path], threshold: float = 0.01) -> list[dict]:
    """Rows where Timeloop's random search found less energy than the model's optimum
    (by more than `threshold`) at no more cycles than the model's: the model costs
    Timeloop's own mapping (its DRAM loops, read from the run's map.txt under the first of
    `workdirs`, the LUT jobs' --workdir, that holds it), which tells a mapping the model's
    mapspace lacks from one it holds but ranks differently (its cycles or energy differ)."""
    from cosearch.hw.cost_model import mapping_cost

    out = []
    for r in analyse()["per_row"]:
        if r["best_from"] != "random":
            continue
        if r["model_energy_pJ_uncalibrated"] <= r["best_energy_pJ"] * (1 + threshold):
            continue
        M, K, N = map(int, r["shape"].split("x"))
        runs = (sorted((d / r["hw"] / f"M{M}_K{K}_N{N}").glob("try*")) for d in workdirs)
        tries = next((t for t in runs if len(t) >= r["tries"]), None)
        if tries is None:
            sys.exit(
                f"error: no mapper run of {r['hw']} {r['shape']} under "
                f"{', '.join(map(str, workdirs))}; pass the LUT job's --workdir"
            )
        p, c, n, inner = _dram_loops(
            (tries[r["tries"] - 1] / "timeloop-mapper.map.txt").read_text()
        )
        own = mapping_cost(M, K, N, r["hw"], p=p, c=c, n=n, inner=inner)
        mc, me, mp, mcc, mn, minner = model_mapping(M, K, N, r["hw"])
        out.append(
            {
                "hw": r["hw"],
                "shape": r["shape"],
                "timeloop_mapping": f"p={p} c={c} n={n} inner={inner}",
                "timeloop_cycles": r["best_cycles"],
                "timeloop_energy_pJ": r["best_energy_pJ"],
                "model_on_timeloop_mapping_cycles": own["cycles"],
                "model_on_timeloop_mapping_energy_pJ": own["energy_pJ"],
                "model_pick": f"p={mp} c={mcc} n={mn} inner={minner}",
                "model_pick_cycles": mc,
                "model_pick_energy_pJ_uncalibrated": me,
                "model_pick_over_timeloop_energy": me / r["best_energy_pJ"],
            }
        )
    with MISSES.open("w", newline="") as f:
        fields = ["hw", "shape", "timeloop_mapping", "timeloop_cycles", "timeloop_energy_pJ"]
        fields += [k for k in (out[0] if out else {}) if k not in fields]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(out)
    return out


ACC_PORT = RESULTS / "timeloop_acc_port.csv"


def acc_port(out: Path = ACC_PORT) -> dict:
    """The model's cycles of one mapping vs Timeloop's, on every pinned row (Timeloop's
    cycles of the model's own mapping) and every `misses` row (the model's cycles of
    Timeloop's mapping): the shipped model, whose accumulator-port term counts updates and
    reads, and the model before that fix, which also counted the fills of spilled partial
    sums (what the change moved)."""
    from cosearch.hw.cost_model import mapping_cost

    cases = []
    with PINNED.open() as f:
        for r in csv.DictReader(f):
            m = (int(r["p"]), int(r["c"]), int(r["n"]), r["inner"])
            cases.append(("pinned", r["hw"], int(r["M"]), int(r["K"]), int(r["N"]), m, r))
    if MISSES.exists():
        with MISSES.open() as f:
            for r in csv.DictReader(f):
                d = dict(kv.split("=") for kv in r["timeloop_mapping"].split())
                m = (int(d["p"]), int(d["c"]), int(d["n"]), d["inner"])
                M, K, N = map(int, r["shape"].split("x"))
                cases.append(("miss", r["hw"], M, K, N, m, r))
    rows = []
    for kind, hw, M, K, N, (p, c, n, inner), r in cases:
        cfg = get_hw(hw)
        x = mapping_cost(M, K, N, hw, p=p, c=c, n=n, inner=inner)
        cs = max(d for d in range(1, cfg.pe_rows + 1) if K % d == 0)
        ks = max(d for d in range(1, cfg.pe_cols + 1) if N % d == 0)
        before = max(
            M * K * N / (cs * ks),
            x["dram"] / cfg.dram_bytes_per_cycle,
            (x["sp_read"] + x["sp_fill"]) / (2 * cfg.pe_cols),
            (x["acc_update"] + x["acc_read"] + x["acc_fill"]) / (2 * ks),
        )
        tl = float(r["pinned_cycles"] if kind == "pinned" else r["timeloop_cycles"])
        rows.append(
            {
                "kind": kind,
                "hw": hw,
                "shape": f"{M}x{K}x{N}",
                "spilled_partial_sums": x["acc_fill"] > 0,
                "timeloop_cycles": tl,
                "model_cycles": x["cycles"],
                "model_cycles_before_port_fix": before,
                "model_equal": abs(x["cycles"] - tl) <= 1,
                "before_port_fix_equal": abs(before - tl) <= 1,
            }
        )
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    spill = [r for r in rows if r["spilled_partial_sums"]]
    res = {
        "rows": len(rows),
        "model_equal": sum(r["model_equal"] for r in rows),
        "before_port_fix_equal": sum(r["before_port_fix_equal"] for r in rows),
        "rows_with_spilled_partial_sums": len(spill),
        "spill_model_equal": sum(r["model_equal"] for r in spill),
        "spill_before_port_fix_equal": sum(r["before_port_fix_equal"] for r in spill),
    }
    return res


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
    p.add_argument(
        "step",
        choices=(
            "shapes",
            "run",
            "analyse",
            "check-shared",
            "pinned",
            "misses",
            "tolerance",
            "acc-port",
            "lut-vs-model",
        ),
    )
    a, extra = p.parse_known_args(argv)
    if a.step == "shapes":
        write_shapes()
        return 0
    if a.step == "run":
        return run(extra)
    if a.step == "pinned":
        q = argparse.ArgumentParser()
        q.add_argument("--workdir", required=True)
        q.add_argument("--mapper-timeout-s", type=float, default=120.0)
        b = q.parse_args(extra)
        pinned(Path(b.workdir), b.mapper_timeout_s)
        return 0
    if a.step == "misses":
        q = argparse.ArgumentParser()
        q.add_argument(
            "--workdir", action="append", required=True, help="a LUT job's --workdir (repeat)"
        )
        for row in misses([Path(d) for d in q.parse_args(extra).workdir]):
            print(row)
        return 0
    if a.step == "tolerance":
        q = argparse.ArgumentParser()
        q.add_argument("--tol", default="0.000001,0.005,0.015,0.03", help="comma-separated")
        tolerance([float(t) for t in q.parse_args(extra).tol.split(",")])
        return 0
    if a.step == "acc-port":
        print(json.dumps(acc_port(), indent=2))
        return 0
    if a.step == "lut-vs-model":
        print(json.dumps(lut_vs_model(), indent=2))
        return 0
    if a.step == "check-shared":
        print(json.dumps(check_shared(), indent=2))
        return 0
    res = analyse()
    short = {k: v for k, v in res.items() if k != "per_row"}
    for k in ("random_search", "timeloop_best"):
        short[k] = {kk: vv for kk, vv in res[k].items() if kk != "per_shape"}
    print(json.dumps(short, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
