#!/bin/bash
# Decode walls (issue #18 item 4): KV-cache generation of the largest, smallest and one mid
# arch of a supernet checkpoint, tokens/s and peak memory over contexts 128..32k and batch
# sizes 1..64, each case isolated (4 GiB RSS limit, 300 s timeout). Resumes if the output
# exists. No data is read (the vocabulary size is in the checkpoint's config.json).
#
#   bash experiments/serving/decode_walls/run.sh                    # committed checkpoint
#   CHECKPOINT=runs/supernet-cpu-v2 OUT=experiments/serving/decode_walls/results-v2 \
#       bash experiments/serving/decode_walls/run.sh                # a new checkpoint
#
# Extra flags pass through (e.g. --quiet, --retry-failed).
set -euo pipefail
cd "$(dirname "$0")/../../.."
CHECKPOINT=${CHECKPOINT:-checkpoints/supernet-cpu}
OUT=${OUT:-experiments/serving/decode_walls/results}
MID='{"n_layers":3,"d_model":192,"heads":[2,2,2],"d_ffn":[512,512,512]}'
nice -n 10 python -m cosearch.profile_wall --checkpoint "$CHECKPOINT" --scenario decode \
    --archs "largest,smallest,$MID" --seed 0 \
    --contexts 128,1024,8192,32768 --batches 1,8,64 --decode-steps 8 \
    --runs 5 --warmup 1 --mem-limit-gb 4 --timeout-s 300 \
    --out "$OUT" "$@"
