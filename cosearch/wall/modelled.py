"""The modelled view of the wall: the same models on Gemmini, from the hardware cost model.

Owns `modelled_rows` (latency, energy, EDP and the attention share of each, per arch,
sequence length and Gemmini config, from `cosearch.hw.lut.Coster` at seq_len=L) and its
CSV. Where a LUT covers every shape at a length it is used ('auto'); other lengths use the
analytical Gemmini model, and each row says which. Gemmini has no memory wall of the host
kind (the tiler streams any GEMM through the scratchpad), so this view shows the compute
side of the wall: how fast the quadratic attention terms take over. It must not run models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from cosearch.hw.lut import Coster
from cosearch.runinfo import write_csv_atomic
from cosearch.space import SearchSpace
from cosearch.wall.results import MODELLED_CSV

ATTENTION_KINDS = ("attn_score", "attn_context", "softmax")
COLUMNS = (
    "label",
    "arch_id",
    "seq_len",
    "hw",
    "backend",
    "latency_ms",
    "energy_mJ",
    "edp_Js",
    "backbone_latency_ms",
    "attn_latency_share",
    "attn_energy_share",
    "lm_head_latency_share",
    "macs",
)


def modelled_rows(
    space: SearchSpace,
    models: Sequence,
    seqs: Iterable[int],
    hws: Iterable[str],
    lut_dir: str | Path | None = None,
) -> list[dict]:
    """One row per (model, length, hw). `models`: objects with .label and .arch."""
    rows = []
    for L in seqs:
        lut, analytical = (
            Coster(space, seq_len=L, backend="auto", strict=True, lut_dir=lut_dir),
            Coster(space, seq_len=L, backend="analytical"),
        )
        for hw in hws:
            for m in models:
                try:
                    c = lut.cost(m.arch, hw)
                    src = lut.sources().get(hw, "")
                    backend = (
                        "analytical"
                        if src.startswith("analytical")
                        else "timeloop"
                        if "timeloop" in Path(src).parts
                        else "lut"
                    )
                except KeyError:  # some shape at this length is not in the LUT
                    c, backend = analytical.cost(m.arch, hw), "analytical"
                att_c = sum(c.breakdown.get(k, (0.0, 0.0))[0] for k in ATTENTION_KINDS)
                att_e = sum(c.breakdown.get(k, (0.0, 0.0))[1] for k in ATTENTION_KINDS)
                lm = c.breakdown.get("lm_head", (0.0, 0.0))
                rows.append(
                    {
                        "label": m.label,
                        "arch_id": m.arch.short(),
                        "seq_len": L,
                        "hw": hw,
                        "backend": backend,
                        "latency_ms": c.latency_s * 1e3,
                        "energy_mJ": c.energy_J * 1e3,
                        "edp_Js": c.edp,
                        "backbone_latency_ms": c.backbone_latency_cycles / (c.clock_ghz * 1e6),
                        "attn_latency_share": att_c / c.latency_cycles,
                        "attn_energy_share": att_e / c.energy_pJ,
                        "lm_head_latency_share": lm[0] / c.latency_cycles,
                        "macs": space.macs(m.arch, L),
                    }
                )
    return rows


def write_modelled(
    out: str | Path,
    space: SearchSpace,
    models: Sequence,
    seqs: Iterable[int],
    hws: Iterable[str],
    lut_dir: str | Path | None = None,
) -> Path:
    rows = modelled_rows(space, models, seqs, hws, lut_dir)
    path = Path(out) / MODELLED_CSV
    write_csv_atomic(
        path,
        list(COLUMNS),
        ({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows),
    )
    return path
