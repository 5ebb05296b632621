#!/usr/bin/env bash
# The RNN-era measurements of the README ("The RNN era: ELMo, CoVe, AWD-LSTM + ULMFiT, SiATL"),
# every command as it ran, at the scale measured on one shared CPU core (about 25 CPU-minutes).
# From the repository root:
#
#     bash bench/rnn_era.sh                  # stages 0-5, 4b, 4c: the measured ones
#     STAGES="6" bash bench/rnn_era.sh       # CoVe (translation pre-training, then SST-2 features)
#
# OUT (default bench/results/rnn) receives one log per command and the runs under OUT/runs;
# DATA (default ../shared/data) holds the corpora.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-bench/results/rnn}
R=$OUT/runs
STAGES=${STAGES:-"0 1 2 3 4 4b 4c 5"}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PTMZOO=${PTMZOO:-python -m ptmzoo}
C=$DATA/en/corpus
SST=$DATA/en/sst2
CONLL=$DATA/en/conll2003
M30K=$DATA/en/multi30k
mkdir -p "$R"

# run NAME COMMAND...: the command under `nice -n 5`, its output and CPU time in OUT/NAME.log
run() {
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.log"
  { uptime; TIMEFORMAT='cpu: user %U s, sys %S s, wall %R s'; time nice -n 5 "$@"; } >> "$OUT/$name.log" 2>&1
  tail -n 3 "$OUT/$name.log"
}
has() { [[ " $STAGES " == *" $1 "* ]]; }

# 0. One English corpus for every language model: WikiText-2's test split (321k WordPiece tokens,
#    4k vocabulary); the first 300 kB of WikiText-2's validation split are held out for perplexity.
if has 0; then
  run 00_tokenizer $PTMZOO tokenizer train --input "$C/wikitext2.test.txt" --kind wordpiece --vocab-size 4000 \
    --out "$R/tok"
  run 01_prepare $PTMZOO prepare --input "$C/wikitext2.test.txt" --tokenizer "$R/tok" --out "$R/shards" \
    --workers 1 --valid-fraction 0.03 --no-progress --overwrite
  head -c 300000 "$C/wikitext2.valid.txt" > "$R/valid300k.txt"
  # model selection on 1,000 sentences of SST-2's dev split; scores on the GLUE dev set (test.tsv).
  # CoNLL-2003: selection on the first 700 sentences of eng.testa, scores on its last 700.
  head -n 1001 "$SST/dev.tsv" > "$R/sst2_dev1000.tsv"
  awk -v RS= -v ORS='\n\n' '!/-DOCSTART-/' "$CONLL/dev.txt" > "$R/conll_testa.txt"
  awk -v RS= -v ORS='\n\n' 'NR <= 700' "$R/conll_testa.txt" > "$R/conll_dev700.txt"
  awk -v RS= -v ORS='\n\n' -v n="$(awk -v RS= 'END {print NR}' "$R/conll_testa.txt")" 'NR > n - 700' \
    "$R/conll_testa.txt" > "$R/conll_test700.txt"
fi

# 1. AWD-LSTM (ULMFiT's dropouts scaled down, 128-d tied embeddings, 3 layers of 384 cells: 2.75M
#    parameters): stream BPTT with variable lengths around 70, the state carried, 600 x 16 x 70 =
#    672k tokens. A GPT-2 of the same size (4 x 200: 2.78M) on the same tokens (328 x 8 x 256).
#    A small ELMo (char CNN of 256 filters, 2 x 512 cells projected to 128: 2.56M) on 300 x 16 x 64.
AWD="model.hidden_size=128 model.lstm_size=384 model.embed_dropout=0.02 model.input_dropout=0.25
model.hidden_dropout=0.15 model.output_dropout=0.1 model.weight_dropout=0.2"
ELMO="hidden_size=256 lstm_size=512 num_highway=1 max_chars=20 filters=[[1,32],[2,32],[3,64],[4,128]]"
if has 1; then
  # shellcheck disable=SC2086
  run 10_pretrain_awd $PTMZOO pretrain --preset awd-lstm --data "$R/shards" --out "$R/awd" --steps 600 \
    --batch-size 16 --seq-len 70 --lr 3e-3 --no-progress $AWD train.warmup_steps=30 train.max_grad_norm=0.5 \
    train.eval_every=200 train.save_every=600 train.eval_batches=20
  run 11_pretrain_gpt2 $PTMZOO pretrain --preset gpt2-tiny --data "$R/shards" --out "$R/gpt2" --steps 328 \
    --batch-size 8 --seq-len 256 --lr 1e-3 --no-progress model.hidden_size=200 model.num_layers=4 \
    model.num_heads=4 model.intermediate_size=800 model.max_position_embeddings=256 train.warmup_steps=16 \
    train.max_grad_norm=0.5 train.eval_every=110 train.save_every=328 train.eval_batches=20
  # shellcheck disable=SC2046
  run 12_pretrain_elmo $PTMZOO pretrain --preset elmo-small --data "$R/shards" --out "$R/elmo" --steps 300 \
    --batch-size 16 --seq-len 64 --lr 3e-3 --no-progress $(for o in $ELMO; do printf 'model.%s ' "$o"; done) \
    train.warmup_steps=20 train.max_grad_norm=0.5 train.eval_every=100 train.save_every=300 train.eval_batches=20
fi

# 2. Perplexity on the held-out text: AWD-LSTM reads it as streams with the state carried, GPT-2 in
#    windows of 256 (stride 128), ELMo's biLM in windows of 64 (the mean of both directions).
if has 2; then
  run 20_ppl_awd $PTMZOO evaluate "$R/awd/final" --perplexity "$R/valid300k.txt"
  run 21_ppl_gpt2 $PTMZOO evaluate "$R/gpt2/final" --perplexity "$R/valid300k.txt" --context 256
  run 22_ppl_elmo $PTMZOO evaluate "$R/elmo/final" --perplexity "$R/valid300k.txt" --context 64
  run 23_generate_awd $PTMZOO generate "$R/awd/final" --prompt "The city of" --max-new-tokens 20 --num-beams 4
fi

# 3. Long-range ability: the loss at each position of 256-token windows read from scratch.
if has 3; then
  run 30_long_range python bench/long_range.py --model "$R/awd/final" --label "AWD-LSTM (2.75M)" \
    --model "$R/gpt2/final" --label "GPT-2 (2.78M)" --text "$R/valid300k.txt" --window 256 --windows 100 \
    --out "$OUT/long_range.png"
fi

# 4. ELMo as features (frozen, learned scalar mix and gamma) vs a random ELMo of the same shape:
#    SST-2 (2,000 training sentences, mean pooling) and CoNLL-2003 NER (2,000 sentences).
if has 4; then
  # shellcheck disable=SC2086
  run 40_init_elmo_random $PTMZOO init --preset elmo-small --tokenizer "$R/tok" --out "$R/elmo_random" $ELMO --seed 1
  for model in elmo/final elmo_random; do
    name=${model%%/*}
    run "41_sst2_$name" $PTMZOO finetune --model "$R/$model" --train "$SST/train.tsv" --dev "$R/sst2_dev1000.tsv" \
      --test "$SST/test.tsv" --text-column sentence --max-train-examples 2000 --out "$R/sst2_$name" --epochs 3 --batch-size 32 \
      --lr 3e-3 --strategy frozen --layers scalar_mix --pooling mean --no-progress
    run "42_conll_$name" $PTMZOO finetune --model "$R/$model" --task tagging --train "$CONLL/train.txt" \
      --dev "$R/conll_dev700.txt" --test "$R/conll_test700.txt" --max-train-examples 2000 --out "$R/conll_$name" --epochs 3 --batch-size 32 \
      --lr 3e-3 --strategy frozen --layers scalar_mix --no-progress
  done
fi

# 4b. The same with each layer normalised before the mix (--mix-layer-norm): the trained ELMo's
#     token layer is ~30x the scale of its LSTM layers, a random ELMo's layers are ~0.02, and the
#     plain mix left both heads at the majority class.
if has 4b; then
  for model in elmo/final elmo_random; do
    name=${model%%/*}
    run "43_sst2_ln_$name" $PTMZOO finetune --model "$R/$model" --train "$SST/train.tsv" --dev "$R/sst2_dev1000.tsv" \
      --test "$SST/test.tsv" --text-column sentence --max-train-examples 2000 --out "$R/sst2_ln_$name" --epochs 3 \
      --batch-size 32 --lr 3e-3 --strategy frozen --layers scalar_mix --mix-layer-norm --pooling mean --no-progress
    run "44_conll_ln_$name" $PTMZOO finetune --model "$R/$model" --task tagging --train "$CONLL/train.txt" \
      --dev "$R/conll_dev700.txt" --test "$R/conll_test700.txt" --max-train-examples 2000 --out "$R/conll_ln_$name" \
      --epochs 3 --batch-size 32 --lr 3e-3 --strategy frozen --layers scalar_mix --mix-layer-norm --no-progress
  done
fi

# 4c. Diagnostic: the same SST-2 features fitted by L-BFGS logistic regression (bench/elmo_probe.py).
if has 4c; then
  run 45_probe_logreg env SST="$SST" python bench/elmo_probe.py "$R/elmo/final" "$R/elmo_random"
fi

# 5. ULMFiT on 500 SST-2 labels: (1) the general-domain LM of stage 1, (2) LM fine-tuning on SST-2's
#    training sentences (text only, 150 steps), (3) the classifier: concat pooling, discriminative
#    rates (2.6), gradual unfreezing, slanted triangular rates. Against: the same classifier from
#    scratch; stages 1 + 3 only; SiATL (stage 1, then one run with the auxiliary LM loss decaying
#    x0.5 per epoch and sequential unfreezing at epochs 2 and 4).
if has 5; then
  cut -f1 "$SST/train.tsv" | tail -n +2 > "$R/sst2_text.txt"
  run 50_prepare_sst2 $PTMZOO prepare --input "$R/sst2_text.txt" --tokenizer "$R/tok" --out "$R/sst2_shards" \
    --workers 1 --valid-fraction 0.02 --no-progress --overwrite
  # shellcheck disable=SC2086
  run 51_lm_finetune $PTMZOO pretrain --preset awd-lstm --data "$R/sst2_shards" --init-from "$R/awd/final" \
    --out "$R/awd_sst2" --steps 150 --batch-size 16 --seq-len 70 --lr 1e-3 --no-progress $AWD \
    train.warmup_steps=10 train.max_grad_norm=0.5 train.eval_every=150 train.save_every=150 train.eval_batches=20
  CLF="--train $SST/train.tsv --dev $R/sst2_dev1000.tsv --test $SST/test.tsv --text-column sentence --max-train-examples 500 --epochs 6
--batch-size 32 --lr 3e-3 --pooling concat --slanted-triangular --no-progress"
  # shellcheck disable=SC2086
  run 52_ulmfit_123 $PTMZOO finetune --model "$R/awd_sst2/final" --out "$R/ulmfit_123" $CLF \
    --discriminative-lr 2.6 --gradual-unfreezing
  # shellcheck disable=SC2086
  run 53_ulmfit_13 $PTMZOO finetune --model "$R/awd/final" --out "$R/ulmfit_13" $CLF --discriminative-lr 2.6 \
    --gradual-unfreezing
  # shellcheck disable=SC2086
  run 54_scratch $PTMZOO finetune --model "$R/awd/final" --out "$R/ulmfit_scratch" $CLF --from-scratch
  # shellcheck disable=SC2086
  run 55_siatl $PTMZOO finetune --model "$R/awd/final" --out "$R/siatl" $CLF --aux-lm-weight 0.2 \
    --aux-lm-decay 0.5 --sequential-unfreezing 2,4
fi

# 6. CoVe: an attentional LSTM translation model on Multi30k en-de (a joint 8k BPE; 128-d embeddings,
#    2 x 128 cells per direction), then its features [embedding; CoVe] frozen for SST-2 (max pooling)
#    against a random CoVe of the same shape.
if has 6; then
  mkdir -p "$R/m30k"
  for split in train val test_2016_flickr; do
    { printf 'source\ttarget\n'; paste <(zcat "$M30K/$split.en.gz" | tr -d '\t') <(zcat "$M30K/$split.de.gz" | tr -d '\t'); } \
      > "$R/m30k/$split.tsv"
  done
  cut -f1,2 "$R/m30k/train.tsv" | tail -n +2 | tr '\t' '\n' > "$R/m30k/train.txt"
  run 60_tokenizer_m30k $PTMZOO tokenizer train --input "$R/m30k/train.txt" --kind bpe --style roberta \
    --vocab-size 8000 --out "$R/m30k_tok"
  run 61_init_cove $PTMZOO init --preset cove --tokenizer "$R/m30k_tok" --out "$R/cove_init" embedding_size=128 \
    lstm_size=128
  run 62_cove_mt $PTMZOO finetune --model "$R/cove_init" --task translation --train "$R/m30k/train.tsv" \
    --dev "$R/m30k/val.tsv" --test "$R/m30k/test_2016_flickr.tsv" --max-length 64 --out "$R/cove_mt" --epochs 1 \
    --batch-size 64 --lr 2e-3 --num-beams 4 --no-progress train.warmup_ratio=0.05
  for model in cove_mt/best cove_init; do
    name=${model%%/*}
    run "63_sst2_$name" $PTMZOO finetune --model "$R/$model" --train "$SST/train.tsv" --dev "$R/sst2_dev1000.tsv" \
      --test "$SST/test.tsv" --text-column sentence --max-train-examples 2000 --out "$R/sst2_$name" --epochs 3 --batch-size 32 \
      --lr 3e-3 --strategy frozen --pooling max --no-progress
  done
fi
