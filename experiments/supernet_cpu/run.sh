#!/usr/bin/env bash
# Reproduce experiments/supernet_cpu: train the cpu supernet and the from-scratch largest
# baseline with the same token budget, then evaluate both. Needs COSEARCH_DATA or --data-dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m cosearch.train_supernet --preset cpu --workdir runs/supernet-cpu --resume
python -m cosearch.train_supernet --preset cpu --from-scratch largest --workdir runs/scratch-cpu --resume
python experiments/supernet_cpu/run.py --supernet runs/supernet-cpu --scratch runs/scratch-cpu
