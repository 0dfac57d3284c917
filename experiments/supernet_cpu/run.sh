#!/usr/bin/env bash
# Reproduce experiments/supernet_cpu: train the cpu supernet and the from-scratch largest
# baseline with the same token budget (the cpu preset: 2,000 steps of 16 x 128 tokens),
# then evaluate both on the whole validation and test splits beside the count-based
# floors. Needs COSEARCH_DATA or --data-dir. About 2.5 h on 2 cores; each step resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
resume() { [ -f "$1/config.json" ] && echo --resume || true; }  # --resume only an existing run
python experiments/baselines/run.py
python -m cosearch.train_supernet --preset cpu --workdir runs/supernet-cpu $(resume runs/supernet-cpu)
python -m cosearch.train_supernet --preset cpu --from-scratch largest --workdir runs/scratch-cpu \
    $(resume runs/scratch-cpu)
python experiments/supernet_cpu/run.py --supernet runs/supernet-cpu --scratch runs/scratch-cpu
