#!/usr/bin/env bash
# hw_cosearch: joint search of the arch and the Gemmini buffer split under the thesis's SRAM
# budget (scratchpad + accumulator <= 320 KiB), in both mapping regimes (see report.md),
# the same search fixed on each joint front's own best config, then the same search on the
# two fixed thesis configs in the gemmini-tiler regime, the
# comparison with the fixed-config fronts (optimal regime: experiments/thesis_cpu seed 0) and
# the heat map of the best arch's EDP at every (scratchpad, accumulator) point.
# Needs COSEARCH_DATA and the committed cpu supernet. Each search resumes if interrupted; a
# search already landed in OUT (pareto.json without state/) is kept, not run again.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Costs from the analytical Gemmini model for every shape (BACKEND=auto would take the
# real-Timeloop rows of lut/cpu/timeloop/ for the two thesis configs: Timeloop's random
# search, 77-79 of 103 rows cut by the mapper's wall limit, i.e. upper bounds, while the
# other configs come from the model, so one search would compare configs costed by two
# sources; where Timeloop is run on the model's mapping it confirms the model to 0.4 %:
# experiments/cost_model_validation/report.md, section 10).
BACKEND=${BACKEND:-analytical}
OUT=${OUT:-experiments/hw_cosearch/results}
# Perplexity cache (not committed); PPL_CACHE=experiments/thesis_cpu/results/ppl-cache
# shares the thesis study's scores of the same checkpoint (same numbers, less time).
PPL_CACHE=${PPL_CACHE:-$OUT/ppl-cache}
# search DIR REGIME HW [extra flags]: one seed-0 search into DIR, resumed if interrupted
search() {
  local dir=$1 regime=$2 hw=$3
  shift 3
  # a finished search brought into the repository (land_results.py: pareto.json, no state/)
  if [[ -f $dir/pareto.json && ! -d $dir/state ]]; then
    echo "$dir: finished results (no state/ to resume); skipped" >&2
    return 0
  fi
  local resume=()
  [[ -d $dir/state ]] && resume=(--resume)
  python -m cosearch.search --checkpoint checkpoints/supernet-cpu \
    --baseline-checkpoint checkpoints/scratch-cpu --hw "$hw" --regime "$regime" --seed 0 \
    --eval-tokens 2048 --final-tokens 20000 --budget-tokens 0 \
    --budget-screen-tokens 20000,60000 --budget-max-evals 0 --backend "$BACKEND" \
    --ppl-cache "$PPL_CACHE" --out "$dir" "${resume[@]}" "$@"
}
for regime in optimal gemmini-tiler; do
  search "$OUT/$regime" "$regime" search --hw-budget-kib 320 "$@"
  # the same search fixed on the joint front's own best config: does the joint search find
  # more than that config ("hardware-only" when not)?
  best=$(python experiments/hw_cosearch/analyse.py --best-config "$OUT/$regime")
  search "$OUT/$regime-fixed-best" "$regime" "$best" "$@"
done
# The fixed thesis configs in the gemmini-tiler regime (the optimal-regime ones are
# experiments/thesis_cpu's seed 0, compared with when present).
search "$OUT/fixed-tiler" gemmini-tiler gemmini-64k-256k,gemmini-256k-64k "$@"
fixed=(--fixed "$OUT/fixed-tiler")
thesis=${THESIS:-experiments/thesis_cpu/results/seed0}  # from experiments/thesis_cpu/run.sh
[[ -f $thesis/pareto.json ]] && fixed+=(--fixed "$thesis")
python experiments/hw_cosearch/analyse.py --results "$OUT" "${fixed[@]}"
