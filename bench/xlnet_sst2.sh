#!/usr/bin/env bash
# XLNet in miniature: permutation-LM pre-training of xlnet-tiny (2 x 128) on a real corpus (30
# Wikipedia articles, WordPiece with XLNet's <sep>/<cls>), then SST-2 fine-tuning of that
# checkpoint against the same architecture from random weights (--from-scratch), on the first
# 4,000 training sentences for two epochs (lr 1e-3), scored on the GLUE dev set (test.tsv, 872 sentences).
#
#   bash bench/xlnet_sst2.sh     # about 8 CPU-minutes
set -euo pipefail
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-300}
OUT=${OUT:-bench/results/xlnet}
DATA=${DATA:-../shared/data/en}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"
ptmzoo() { nice -n 5 "$PY" -m ptmzoo.cli "$@"; }
[ -f "$OUT/tok/tokenizer.json" ] || ptmzoo tokenizer train --input "$DATA/corpus/wiki_demo.txt" --kind wordpiece \
    --vocab-size 8000 --style xlnet --out "$OUT/tok"
[ -f "$OUT/shards/meta.json" ] || ptmzoo prepare --tokenizer "$OUT/tok" --input "$DATA/corpus/wiki_demo.txt" \
    --out "$OUT/shards" --workers 1 --no-progress --valid-fraction 0.05
rm -rf "$OUT/sst2" "$OUT/sst2_scratch"  # fresh runs
[ -f "$OUT/plm/final/ptmzoo.json" ] || ptmzoo pretrain --preset xlnet-tiny --data "$OUT/shards" --out "$OUT/plm" --steps "$STEPS" --batch-size 16 \
    --seq-len 128 --lr 1e-3 --no-progress train.warmup_steps=30 train.log_every=10 train.seed=0
SST=(--task classification --train "$DATA/sst2/train.tsv" --dev "$DATA/sst2/test.tsv" --text-column sentence
     --max-train-examples 4000 --epochs 2 --batch-size 32 --lr 1e-3 --max-length 64 --seed 0 --no-progress)
ptmzoo finetune --model "$OUT/plm/final" --out "$OUT/sst2" "${SST[@]}"
ptmzoo finetune --model "$OUT/plm/final" --out "$OUT/sst2_scratch" --from-scratch "${SST[@]}"
