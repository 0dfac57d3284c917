#!/usr/bin/env bash
# serving: the co-search in three serving scenarios (prefill, decode step, chat request) x two
# mapping regimes on the cpu space and the committed supernet (checkpoints/supernet-cpu), with
# the buffer split searched jointly (320 KiB SRAM). See report.md.
# Needs COSEARCH_DATA (WikiText-2) for the searches; ../shared/firesim for the GEMV check.
set -euo pipefail
cd "$(dirname "$0")/../.."
# 1. cost tables of the decode and chat scenarios (analytical model; seconds). The prefill
#    tables are lut/cpu's (lut/README.md). No Timeloop here: analytical rows only.
for scenario in decode chat; do
  for regime in optimal gemmini-tiler; do
    python -m cosearch.build_lut --preset cpu --hw grid --scenario "$scenario" --regime "$regime"
  done
done
# 2. GEMV cycles: the tiler regime vs Gemmini RTL (FireSim rows with M = 1)
python experiments/serving/gemv_firesim.py
# 3. six searches, one shared perplexity cache (~10 min on 2 busy cores; resumable). Add
#    --ppl-cache experiments/thesis_cpu/results/ppl-cache to reuse the thesis study's
#    2,048-token scores of the same checkpoint.
python experiments/serving/search.py --population 32 --generations 16 --eval-tokens 2048 "$@"
# 4. best buffer split per scenario and regime over 2,000 archs, fronts, figures
python experiments/serving/analyse.py --archs 2000
