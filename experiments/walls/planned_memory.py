"""XLA's planned memory of the forward (compile only, nothing runs) for the sweep's models.

Complements the measured sweep where cases were not run: the compiled program's scratch
(temp) and output sizes plus the parameters give the memory a case needs, so the memory
wall under a limit can be located without running the forward. Writes
results/planned_memory.csv. Usage: python experiments/walls/planned_memory.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp

from cosearch.space import Arch, get_space
from cosearch.supernet.model import build_model

HERE = Path(__file__).resolve().parent
LENGTHS = (2048, 4096, 8192, 16384, 32768)


def main() -> None:
    run = json.loads((HERE / "results" / "run.json").read_text())
    space = get_space(run["space"])
    rows = []
    for m in run["models"]:
        arch = Arch.from_dict(m["arch"])
        for att in ("dense", "chunked"):
            model = build_model(
                space, run["vocab_size"], arch, cutoffs=(2000, 10000), tail_div=4, attention=att
            )
            p = jax.eval_shape(
                lambda model=model: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
            )
            for L in LENGTHS:
                x = jax.ShapeDtypeStruct((1, L), jnp.int32)
                ma = jax.jit(model.apply).lower(p, x).compile().memory_analysis()
                rows.append(
                    {
                        "label": m["label"],
                        "arch_id": m["arch_id"],
                        "attention": att,
                        "seq_len": L,
                        "xla_temp_mb": round(ma.temp_size_in_bytes / 2**20, 1),
                        "xla_output_mb": round(ma.output_size_in_bytes / 2**20, 1),
                        "xla_args_mb": round(ma.argument_size_in_bytes / 2**20, 1),
                    }
                )
                print(rows[-1], flush=True)
    out = HERE / "results" / "planned_memory.csv"
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
