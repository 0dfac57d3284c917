#!/usr/bin/env bash
# thesis_cpu: the thesis's study on the cpu preset (see report.md). Three NSGA-II seeds, each
# searching gemmini-64k-256k and gemmini-256k-64k (the thesis's config and Gemmini's default)
# over the committed cpu supernet, with the committed from-scratch largest model as baseline,
# then the seed table and plots. Needs COSEARCH_DATA. Each seed resumes if interrupted; a
# seed already landed in OUT (pareto.json without state/) is kept, so on a new machine
# `bash experiments/thesis_cpu/run.sh` runs only the seeds not yet in results/.
# The seeds share one perplexity cache (results/ppl-cache/, not committed): an arch scored
# by one seed is not scored again by the next (same numbers, less time).
# To retrain both models first (about 40 min here):
#   python -m cosearch.train_supernet --preset cpu --workdir runs/supernet-cpu
#   python -m cosearch.train_supernet --preset cpu --from-scratch largest --workdir runs/scratch-cpu
# and pass SUPERNET=runs/supernet-cpu SCRATCH=runs/scratch-cpu.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Costs from the analytical Gemmini model for every shape (BACKEND=auto would take the
# real-Timeloop rows of lut/cpu/timeloop/ for the two thesis configs: Timeloop's random
# search, 77-79 of 103 rows cut by the mapper's wall limit, i.e. upper bounds, while the
# other configs come from the model, so one search would compare configs costed by two
# sources; where Timeloop is run on the model's mapping it confirms the model to 0.4 %:
# experiments/cost_model_validation/report.md, section 10).
BACKEND=${BACKEND:-analytical}
SUPERNET=${SUPERNET:-checkpoints/supernet-cpu}
SCRATCH=${SCRATCH:-checkpoints/scratch-cpu}
OUT=${OUT:-experiments/thesis_cpu/results}
for seed in ${SEEDS:-0 1 2}; do
  dir=$OUT/seed$seed
  # a finished seed brought into the repository (land_results.py: pareto.json, no state/)
  if [[ -f $dir/pareto.json && ! -d $dir/state ]]; then
    echo "seed $seed: finished results in $dir (no state/ to resume); skipped" >&2
    continue
  fi
  resume=()
  [[ -d $dir/state ]] && resume=(--resume)
  python -m cosearch.search --checkpoint "$SUPERNET" --baseline-checkpoint "$SCRATCH" \
    --hw gemmini-64k-256k,gemmini-256k-64k --seed "$seed" \
    --eval-tokens 2048 --final-tokens 20000 --budget-tokens 0 --budget-screen-tokens 20000,60000 --budget-max-evals 0 --backend "$BACKEND" --ppl-cache "$OUT/ppl-cache" --out "$dir" "${resume[@]}" "$@"
done
python experiments/thesis_cpu/analyse.py "$OUT"
