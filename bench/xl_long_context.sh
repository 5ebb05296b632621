#!/usr/bin/env bash
# The long-dependency experiment of Transformer-XL (Dai et al., 2019) in miniature, on WikiText-2:
# a tiny Transformer-XL trained with a memory, the same model trained without one (mem_len 0), and
# a GPT-2-style decoder of the same parameter count (intermediate size 576 instead of 512 makes up
# for XL's per-layer W_R; 1,461,888 vs 1,460,544 parameters) and the same segment length (64), the
# same batch (16 x 64 tokens), learning rate and number of steps. Trained on the WikiText-2
# validation split (256k BPE tokens), scored on the test split by bench/xl_positions.py:
# perplexity overall and by the position of the predicted token in its segment (positions.png).
#
#   bash bench/xl_long_context.sh            # STEPS=600 by default, about 15 CPU-minutes
#   STEPS=100 bash bench/xl_long_context.sh  # a quick look
set -euo pipefail
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-600}
OUT=${OUT:-bench/results/xl}
DATA=${DATA:-../shared/data/en/corpus}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"
ptmzoo() { nice -n 5 "$PY" -m ptmzoo.cli "$@"; }
[ -f "$OUT/tok/tokenizer.json" ] || ptmzoo tokenizer train --input "$DATA/wikitext2.valid.txt" --kind bpe \
    --vocab-size 8000 --docs blank --out "$OUT/tok"
[ -f "$OUT/shards/meta.json" ] || ptmzoo prepare --tokenizer "$OUT/tok" --input "$DATA/wikitext2.valid.txt" \
    --docs blank --out "$OUT/shards" --workers 1 --no-progress --valid-fraction 0.05
COMMON=(--data "$OUT/shards" --steps "$STEPS" --batch-size 16 --seq-len 64 --lr 1e-3 --no-progress
        train.warmup_steps=50 train.log_every=10 train.seed=0)
rm -rf "$OUT/xl_mem" "$OUT/xl_nomem" "$OUT/gpt"  # fresh runs
ptmzoo pretrain --preset transfo-xl-tiny --out "$OUT/xl_mem" "${COMMON[@]}" model.mem_len=64
ptmzoo pretrain --preset transfo-xl-tiny --out "$OUT/xl_nomem" "${COMMON[@]}" model.mem_len=0
ptmzoo pretrain --preset gpt2-tiny --out "$OUT/gpt" "${COMMON[@]}" model.intermediate_size=576 \
    model.max_position_embeddings=64
nice -n 5 "$PY" bench/xl_positions.py --text "$DATA/wikitext2.test.txt" --segment 64 --out "$OUT" \
    --model "xl_mem=$OUT/xl_mem/final:64" --model "xl_mem_192=$OUT/xl_mem/final:192" \
    --model "xl_mem_read_without=$OUT/xl_mem/final:0" --model "xl_nomem=$OUT/xl_nomem/final:0" \
    --model "gpt=$OUT/gpt/final"
