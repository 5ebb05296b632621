#!/usr/bin/env bash
# The RNN-era measurements of the README ("The RNN era: ELMo, CoVe, AWD-LSTM + ULMFiT, SiATL"),
# every command as it ran. From the repository root:
#
#     bash bench/rnn_era.sh                # the measured scale (about 1.5 hours on one busy CPU core)
#     SCALE=smoke bash bench/rnn_era.sh    # every command on a few steps (a few minutes)
#
# RUNS (default runs/rnn) receives the runs, DATA (default ../shared/data) holds the corpora.
set -euo pipefail
DATA=${DATA:-../shared/data}
RUNS=${RUNS:-runs/rnn}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PTMZOO=${PTMZOO:-python -m ptmzoo}
C=$DATA/en/corpus
SST=$DATA/en/sst2
CONLL=$DATA/en/conll2003
M30K=$DATA/en/multi30k

if [ "${SCALE:-full}" = smoke ]; then
  AWD_STEPS=6; GPT_STEPS=6; ELMO_STEPS=4; SST_LM_STEPS=4; EPOCHS=1; ULM_EPOCHS=2; MT_EPOCHS=0.02; WINDOWS=4
  BUDGET=64; FEATURES=64; PPL_TEXT=$RUNS/ppl_text.txt
else
  AWD_STEPS=900; GPT_STEPS=984; ELMO_STEPS=600; SST_LM_STEPS=200; EPOCHS=3; ULM_EPOCHS=6; MT_EPOCHS=2; WINDOWS=200
  BUDGET=500; FEATURES=2000; PPL_TEXT=$C/wikitext2.valid.txt
fi
mkdir -p "$RUNS"
[ "${SCALE:-full}" = smoke ] && head -c 20000 "$C/wikitext2.valid.txt" > "$PPL_TEXT"
uptime

# 0. One English corpus for every language model: WikiText-2's test split and 30 Wikipedia articles
#    (534k WordPiece tokens); WikiText-2's validation split is held out for the perplexities.
$PTMZOO tokenizer train --input "$C/wikitext2.test.txt" "$C/wiki_demo.txt" --kind wordpiece --vocab-size 8000 \
  --out "$RUNS/tok"
$PTMZOO prepare --input "$C/wikitext2.test.txt" "$C/wiki_demo.txt" --tokenizer "$RUNS/tok" --out "$RUNS/shards" \
  --workers 1 --valid-fraction 0.03 --no-progress --overwrite

# 1. AWD-LSTM (ULMFiT's dropouts, 128-d tied embeddings, 3 x 384 cells: 3.3M parameters), stream BPTT
#    with variable lengths around 70 and the state carried; a GPT-2 of the same size trained on the
#    same number of tokens (984 x 4 x 256 = 1.0M = 900 x 16 x 70); a small ELMo.
AWD="model.hidden_size=128 model.lstm_size=384 model.embed_dropout=0.02 model.input_dropout=0.25 \
model.hidden_dropout=0.15 model.output_dropout=0.1 model.weight_dropout=0.2"
GPT="model.hidden_size=192 model.num_layers=4 model.num_heads=4 model.intermediate_size=768 \
model.max_position_embeddings=256"
ELMO="hidden_size=256 lstm_size=512 num_highway=1 max_chars=20 filters=[[1,32],[2,32],[3,64],[4,128]]"
# shellcheck disable=SC2086
$PTMZOO pretrain --preset awd-lstm --data "$RUNS/shards" --out "$RUNS/awd" --steps $AWD_STEPS --batch-size 16 \
  --seq-len 70 --lr 3e-3 --no-progress $AWD train.warmup_steps=50 train.max_grad_norm=0.5 train.eval_every=300 \
  train.save_every=300 train.eval_batches=50
# shellcheck disable=SC2086
$PTMZOO pretrain --preset gpt2-tiny --data "$RUNS/shards" --out "$RUNS/gpt2" --steps $GPT_STEPS --batch-size 4 \
  --seq-len 256 --lr 1e-3 --no-progress $GPT train.warmup_steps=50 train.max_grad_norm=0.5 train.eval_every=328 \
  train.save_every=328 train.eval_batches=50
# shellcheck disable=SC2086
$PTMZOO pretrain --preset elmo-small --data "$RUNS/shards" --out "$RUNS/elmo" --steps $ELMO_STEPS --batch-size 16 \
  --seq-len 64 --lr 3e-3 --no-progress $(for o in $ELMO; do printf 'model.%s ' "$o"; done) train.warmup_steps=50 \
  train.max_grad_norm=0.5 train.eval_every=200 train.save_every=200 train.eval_batches=50

# 2. Perplexity on WikiText-2 valid: AWD-LSTM reads it as 32 streams with the state carried (chunks of
#    256), GPT-2 with windows of 256 (stride 128), ELMo's biLM in windows of 64 (mean of both directions).
$PTMZOO evaluate "$RUNS/awd/final" --perplexity "$PPL_TEXT" > "$RUNS/awd/ppl.json"
$PTMZOO evaluate "$RUNS/gpt2/final" --perplexity "$PPL_TEXT" --context 256 > "$RUNS/gpt2/ppl.json"
$PTMZOO evaluate "$RUNS/elmo/final" --perplexity "$PPL_TEXT" --context 64 > "$RUNS/elmo/ppl.json"
$PTMZOO generate "$RUNS/awd/final" --prompt "The city of" --max-new-tokens 20 --num-beams 4 > "$RUNS/awd/generated.txt"

# 3. Long-range ability: the loss at each position of 256-token windows read from scratch.
python bench/long_range.py --model "$RUNS/awd/final" --label "AWD-LSTM (3.3M)" --model "$RUNS/gpt2/final" \
  --label "GPT-2 (3.4M)" --text "$C/wikitext2.valid.txt" --window 256 --windows $WINDOWS \
  --out "$RUNS/long_range.png" > "$RUNS/long_range.json"

# 4. ELMo as features (frozen, learned scalar mix and gamma) vs a random ELMo of the same shape:
#    SST-2 (2,000 training sentences, mean pooling) and CoNLL-2003 NER (2,000 sentences).
# shellcheck disable=SC2086
$PTMZOO init --preset elmo-small --tokenizer "$RUNS/tok" --out "$RUNS/elmo_random" $ELMO --seed 1
for model in elmo/final elmo_random; do
  name=$(dirname "$model/x" | tr / _)
  $PTMZOO finetune --model "$RUNS/$model" --train "$SST/train.tsv" --dev "$SST/dev.tsv" --test "$SST/test.tsv" \
    --text-column sentence --max-train-examples $FEATURES --out "$RUNS/sst2_$name" --epochs $EPOCHS --batch-size 32 \
    --lr 3e-3 --strategy frozen --layers scalar_mix --pooling mean --no-progress
  $PTMZOO finetune --model "$RUNS/$model" --task tagging --train "$CONLL/train.txt" --dev "$CONLL/dev.txt" \
    --max-train-examples $FEATURES --out "$RUNS/conll_$name" --epochs $EPOCHS --batch-size 32 --lr 3e-3 \
    --strategy frozen --layers scalar_mix --no-progress
done

# 5. ULMFiT on 500 SST-2 labels: (1) the general-domain LM above, (2) LM fine-tuning on SST-2's
#    60k training sentences (text only), (3) the classifier: concat pooling, discriminative rates
#    (2.6), gradual unfreezing (one layer group per epoch), slanted triangular rates. Against: the
#    same classifier from scratch; stages 1 + 3 only; SiATL (stage 1, then one run with the
#    auxiliary LM loss decaying x0.5 per epoch and sequential unfreezing 2,4).
cut -f1 "$SST/train.tsv" | tail -n +2 > "$RUNS/sst2_text.txt"
$PTMZOO prepare --input "$RUNS/sst2_text.txt" --tokenizer "$RUNS/tok" --out "$RUNS/sst2_shards" --workers 1 \
  --valid-fraction 0.02 --no-progress --overwrite
# shellcheck disable=SC2086
$PTMZOO pretrain --preset awd-lstm --data "$RUNS/sst2_shards" --init-from "$RUNS/awd/final" --out "$RUNS/awd_sst2" \
  --steps $SST_LM_STEPS --batch-size 16 --seq-len 70 --lr 1e-3 --no-progress $AWD train.warmup_steps=20 \
  train.max_grad_norm=0.5 train.eval_every=100 train.eval_batches=20
CLF="--train $SST/train.tsv --dev $SST/dev.tsv --test $SST/test.tsv --text-column sentence --max-train-examples $BUDGET \
--epochs $ULM_EPOCHS --batch-size 32 --lr 3e-3 --pooling concat --slanted-triangular --no-progress"
# shellcheck disable=SC2086
$PTMZOO finetune --model "$RUNS/awd_sst2/final" --out "$RUNS/ulmfit_123" $CLF --discriminative-lr 2.6 --gradual-unfreezing
# shellcheck disable=SC2086
$PTMZOO finetune --model "$RUNS/awd/final" --out "$RUNS/ulmfit_13" $CLF --discriminative-lr 2.6 --gradual-unfreezing
# shellcheck disable=SC2086
$PTMZOO finetune --model "$RUNS/awd/final" --out "$RUNS/ulmfit_scratch" $CLF --from-scratch
# shellcheck disable=SC2086
$PTMZOO finetune --model "$RUNS/awd/final" --out "$RUNS/siatl" $CLF --aux-lm-weight 0.2 --aux-lm-decay 0.5 \
  --sequential-unfreezing 2,4

# 6. CoVe: an attentional LSTM translation model on Multi30k en-de (a joint 8k BPE; 128-d embeddings,
#    2 x 128 cells per direction), then its features [embedding; CoVe] frozen for SST-2 (max pooling)
#    against a random CoVe of the same shape.
mkdir -p "$RUNS/m30k"
for split in train val test_2016_flickr; do
  { printf 'source\ttarget\n'; paste <(zcat "$M30K/$split.en.gz" | tr -d '\t') <(zcat "$M30K/$split.de.gz" | tr -d '\t'); } \
    > "$RUNS/m30k/$split.tsv"
done
cut -f1,2 "$RUNS/m30k/train.tsv" | tail -n +2 | tr '\t' '\n' > "$RUNS/m30k/train.txt"
$PTMZOO tokenizer train --input "$RUNS/m30k/train.txt" --kind bpe --style roberta --vocab-size 8000 --out "$RUNS/m30k_tok"
$PTMZOO init --preset cove --tokenizer "$RUNS/m30k_tok" --out "$RUNS/cove_init" embedding_size=128 lstm_size=128
$PTMZOO finetune --model "$RUNS/cove_init" --task translation --train "$RUNS/m30k/train.tsv" --dev "$RUNS/m30k/val.tsv" \
  --test "$RUNS/m30k/test_2016_flickr.tsv" --max-length 64 --out "$RUNS/cove_mt" --epochs $MT_EPOCHS --batch-size 64 \
  --lr 2e-3 --num-beams 4 --no-progress train.warmup_ratio=0.05
for model in cove_mt/best cove_init; do
  name=$(dirname "$model/x" | tr / _)
  $PTMZOO finetune --model "$RUNS/$model" --train "$SST/train.tsv" --dev "$SST/dev.tsv" --test "$SST/test.tsv" \
    --text-column sentence --max-train-examples $FEATURES --out "$RUNS/sst2_$name" --epochs $EPOCHS --batch-size 32 \
    --lr 3e-3 --strategy frozen --pooling max --no-progress
done
uptime
