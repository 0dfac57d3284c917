#!/bin/bash
# Throughput-wall sweep of the cpu supernet's models (see report.md). Run from anywhere;
# resumes if results/ exists. Uses the committed supernet (checkpoints/supernet-cpu) and
# three archs spread along the co-search front of experiments/thesis_cpu's seed 0; no data is
# read (the vocabulary size is in the checkpoint's config.json). PARETO=FILE takes the archs
# from another search's pareto.json (the session-2 sweep used
# experiments/search_cpu/results/pareto.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
PARETO=${PARETO:-experiments/thesis_cpu/results/seed0/pareto.json}
python -m cosearch.profile_wall --checkpoint checkpoints/supernet-cpu \
    --archs "largest,smallest,pareto:$PARETO" \
    --pareto-max 3 --seed 0 \
    --seq 128,256,512,1024,2048,4096,8192,16384,32768 \
    --attention dense,chunked --batch 1 --runs 5 --warmup 1 \
    --mem-limit-gb 4 --timeout-s 120 \
    --hw gemmini-64k-256k,gemmini-256k-64k \
    --out experiments/walls/results "$@"
