#!/usr/bin/env bash
# Reproduce experiments/search_cpu: 40x40 NSGA-II on both thesis Gemmini configs over the
# trained cpu supernet (runs/supernet-cpu, or the committed checkpoints/supernet-cpu), with
# the from-scratch baseline of experiments/supernet_cpu. Needs COSEARCH_DATA.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m cosearch.search --checkpoint runs/supernet-cpu --hw gemmini-64k-256k,gemmini-256k-64k \
  --eval-tokens 2048 --final-tokens 50000 --baseline-checkpoint runs/scratch-cpu \
  --out experiments/search_cpu/results
