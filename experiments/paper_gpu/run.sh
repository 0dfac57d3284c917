#!/usr/bin/env bash
# paper_gpu: the thesis-scale study in one command on a GPU (README.md: wall-time estimate).
# Trains the `paper` supernet (BigNAS, bf16 compute) and the from-scratch largest arch as the
# baseline, evaluates both on the test split, runs the co-search (NSGA-II 40 x 40) on the
# thesis's Gemmini config and Gemmini's default for each seed, and writes the thesis table
# (experiments/thesis_cpu/analyse.py) under $OUT/search. Every stage resumes if interrupted:
# rerun the same command. Needs a GPU build of JAX (pip install -U "jax[cuda12]") and
#   COSEARCH_DATA=path/to/wikitext-2 bash experiments/paper_gpu/run.sh
# Arguments after the script go to every search (e.g. --population 8 --generations 2).
# Environment (defaults): PRESET (paper), OUT (runs/paper_gpu), SEEDS (0 1 2), DEVICES (all
# devices; data parallel), SET (extra config overrides for both trainings, e.g.
# "train.steps=2000"), EVAL_TOKENS (49152: below 50,000, so that the search evaluates subnets
# in <= 20 compiled depth-and-width buckets instead of compiling each arch), FINAL_TOKENS
# (0 = the front re-evaluated on the whole validation and test splits), DRY_RUN=1 (print the
# commands only).
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${PRESET:-paper}
OUT=${OUT:-runs/paper_gpu}
SEEDS=${SEEDS:-0 1 2}
EVAL_TOKENS=${EVAL_TOKENS:-49152}
FINAL_TOKENS=${FINAL_TOKENS:-0}
read -r -a sets <<< "${SET:-}"
common=(--preset "$PRESET")
[[ -n ${DEVICES:-} ]] && common+=(--devices "$DEVICES")
[[ ${#sets[@]} -gt 0 ]] && common+=(--set "${sets[@]}")

run() {
  echo "+ $*" >&2
  [[ -n ${DRY_RUN:-} ]] || "$@"
}

train() {  # run directory, then extra train_supernet flags
  local dir=$1
  shift
  local resume=()
  [[ -f $dir/config.json ]] && resume=(--resume)
  run python -m cosearch.train_supernet --workdir "$dir" "${common[@]}" "${resume[@]}" "$@"
}

mkdir -p "$OUT"
train "$OUT/supernet"
train "$OUT/scratch" --from-scratch largest
for model in supernet scratch; do
  archs=largest
  [[ $model == supernet ]] && archs=largest,smallest
  if [[ -n ${DRY_RUN:-} ]]; then
    run python -m cosearch.evaluate --checkpoint "$OUT/$model" --archs $archs --split test --json
  else
    run python -m cosearch.evaluate --checkpoint "$OUT/$model" --archs $archs --split test \
      --json > "$OUT/test_$model.json"
  fi
done
for seed in $SEEDS; do
  dir=$OUT/search/seed$seed
  resume=()
  [[ -d $dir/state ]] && resume=(--resume)
  run python -m cosearch.search --checkpoint "$OUT/supernet" --baseline-checkpoint "$OUT/scratch" \
    --hw gemmini-64k-256k,gemmini-256k-64k --seed "$seed" --eval-tokens "$EVAL_TOKENS" \
    --final-tokens "$FINAL_TOKENS" --budget-tokens 0 --budget-screen-tokens 20000,60000 --budget-max-evals 0 --out "$dir" --quiet "${resume[@]}" "$@"
done
run python experiments/thesis_cpu/analyse.py "$OUT/search"
echo "thesis table: $OUT/search/table.md"
