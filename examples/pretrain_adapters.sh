#!/usr/bin/env bash
# Knowledge pre-training, both adapters, from raw corpora to adapter files.
# Usage: examples/pretrain_adapters.sh BASE_DIR [OUT_DIR] [CONFIG_SUFFIX]
#   BASE_DIR       roberta.large/ (model.pt, dict.txt, encoder.json, vocab.bpe) or a tiny base
#                  (python -m kadapter_fairseq.tools.tiny_base tiny_base)
#   OUT_DIR        where data-bin/ and checkpoints/ go (default: work)
#   CONFIG_SUFFIX  "" for the authors' settings (GPU), "_cpu" for the small CPU variants (default)
# Inputs: TREX = T-REx documents (JSON arrays as released, or JSON lines; required, none ships here),
# CONLLU = a CoNLL-U treebank (default: the UD English-EWT sample in examples/data/).
set -euo pipefail
BASE=${1:?base directory}
OUT=${2:-work}
SUFFIX=${3-_cpu}
TREX=${TREX:?set TREX to a T-REx file (JSON arrays or JSON lines)}
CONLLU=${CONLLU:-examples/data/ud_english_ewt/en_ewt-ud-dev_sample.conllu}
MIN_COUNT=${MIN_COUNT:-20}   # 50 on full T-REx; a sample of ~1000 documents has few relations that frequent
PY=${PY:-python}

# 1. factual knowledge: T-REx -> relation examples (@ subject @, # object #) -> binarized
$PY -m data_prep.trex "$TREX" --roberta-dir "$BASE" --out "$OUT/data-bin/trex" --min-count "$MIN_COUNT"
# (FewRel instead: python -m data_prep.fewrel val_wiki.json --roberta-dir $BASE --out $OUT/data-bin/fewrel)

# 2. linguistic knowledge: CoNLL-U gold trees -> head pointers -> binarized
$PY -m data_prep.conllu "$CONLLU" --roberta-dir "$BASE" --out "$OUT/data-bin/heads"
# (raw text instead: python -m data_prep.spacy_parse corpus.txt --roberta-dir $BASE --out $OUT/data-bin/heads)

# 3. train each adapter on its own; RoBERTa stays frozen
fairseq-hydra-train --config-dir configs --config-name "relation_pretrain$SUFFIX" \
  task.data="$OUT/data-bin/trex" model.roberta_path="$BASE" checkpoint.save_dir="$OUT/checkpoints/fac"
fairseq-hydra-train --config-dir configs --config-name "dependency_head_prediction$SUFFIX" \
  task.data="$OUT/data-bin/heads" model.roberta_path="$BASE" checkpoint.save_dir="$OUT/checkpoints/lin"

echo "adapters: $OUT/checkpoints/fac/adapters/fac.pt $OUT/checkpoints/lin/adapters/lin.pt"
echo "use them downstream with model.adapter_paths=fac=$OUT/checkpoints/fac/adapters/fac.pt,lin=$OUT/checkpoints/lin/adapters/lin.pt"
