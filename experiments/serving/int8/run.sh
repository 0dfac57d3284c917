#!/bin/bash
# int8 column (issue #18 item 5): float32 and post-training int8 perplexity on the whole
# validation split for five archs of a supernet checkpoint (largest, smallest, the decode
# walls' mid arch and two archs of the cpu co-search front), paired over the same windows.
# int8 = cosearch/supernet/quant.py (weights per output channel, activations per tensor,
# scales from 64 train-split windows spread evenly over the split, no randomness).
#
#   COSEARCH_DATA=path/to/wikitext-2 bash experiments/serving/int8/run.sh
#   CHECKPOINT=runs/supernet-cpu-v2 OUT=experiments/serving/int8/results-v2 bash ...  # new one
#
# Finished evaluations are cached in the checkpoint's ppl_cache.jsonl: a rerun after a kill
# repeats only the unfinished arch.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CHECKPOINT=${CHECKPOINT:-checkpoints/supernet-cpu}
OUT=${OUT:-experiments/serving/int8/results}
mkdir -p "$OUT"
MID='{"n_layers":3,"d_model":192,"heads":[2,2,2],"d_ffn":[512,512,512]}'
FRONT1='{"n_layers":3,"d_model":256,"heads":[4,3,4],"d_ffn":[1024,768,896]}'
FRONT2='{"n_layers":2,"d_model":192,"heads":[4,1],"d_ffn":[896,384]}'
ARCHS=${ARCHS:-"largest,smallest,$MID,$FRONT1,$FRONT2"}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse HEAD)  # the code that evaluates (at the start)
t0=$(date +%s)
nice -n 10 python -m cosearch.evaluate --checkpoint "$CHECKPOINT" --archs "$ARCHS" \
    --split valid --int8 --json > "$OUT/ppl_int8.json.tmp"
mv "$OUT/ppl_int8.json.tmp" "$OUT/ppl_int8.json"
python - "$OUT" "$CHECKPOINT" "$ARCHS" "$load_start" "$(( $(date +%s) - t0 ))" "$commit" <<'PY'
import json, sys, time
from pathlib import Path
out, ckpt, archs, load_start, secs, commit = sys.argv[1:]
rows = json.loads((Path(out) / "ppl_int8.json").read_text())
from cosearch.supernet.quant import RECIPE
meta = {
    "command": f"python -m cosearch.evaluate --checkpoint {ckpt} --archs '{archs}' "
    "--split valid --int8 --json",
    "checkpoint": ckpt,
    "git_commit": commit.strip(),
    "int8_recipe": RECIPE,
    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "wall_s": int(secs),
    "load_avg_start": load_start,
    "load_avg_end": open("/proc/loadavg").read().split()[:3],
    "note": "2 CPUs shared with two training jobs; timings are not part of the result",
}
(Path(out) / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
lines = [
    f"# int8 vs float32, {rows[0]['split']} split ({rows[0]['tokens']:,} tokens, "
    f"{rows[0]['windows']} windows), {ckpt} step {rows[0]['step']}",
    "",
    f"int8 recipe `{RECIPE}`; Δ = int8 − float32 paired over the same windows (± SE).",
    "",
    "| arch | ppl float32 | ppl int8 | Δppl (int8 − f32) | Δ relative |",
    "|---|---:|---:|---:|---:|",
]
for r in rows:
    lines.append(
        f"| {r['short']} | {r['ppl']:.2f} ± {r['ppl_se']:.2f} | {r['ppl_int8']:.2f} ± "
        f"{r['ppl_int8_se']:.2f} | {r['delta_ppl_int8']:+.2f} ± {r['delta_ppl_int8_se']:.2f} | "
        f"{100 * r['delta_ppl_int8'] / r['ppl']:+.2f} % |"
    )
(Path(out) / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
