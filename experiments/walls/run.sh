#!/bin/bash
# Throughput-wall sweep of the cpu supernet's models (see report.md). Run from anywhere;
# resumes if results/ exists. Needs the trained supernet runs/supernet-cpu
# (runs/train_cpu.sh); no data is read (the vocabulary size is in its config.json).
# No search run existed when this was run, so three random archs of the space stand in
# for the Pareto front (with one: --archs largest,smallest,pareto:runs/search/.../pareto.json).
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m cosearch.profile_wall --checkpoint runs/supernet-cpu \
    --archs largest,smallest,random:3 --seed 0 \
    --seq 128,256,512,1024,2048,4096,8192,16384,32768 \
    --attention dense,chunked --batch 1 --runs 5 --warmup 1 \
    --mem-limit-gb 4 --timeout-s 120 \
    --hw gemmini-64k-256k,gemmini-256k-64k \
    --out experiments/walls/results "$@"
