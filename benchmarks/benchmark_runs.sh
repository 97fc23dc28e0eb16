#!/usr/bin/env bash
# The published `magnetdml benchmark` runs (README "Which loss for my data", docs/benchmark.md):
#
#   finegrained  (a) the paper's regime: three fine-grained groups of Omniglot alphabets, every
#                loss fine-tuned from one partly pretrained backbone (softmax, 3 passes over the
#                training drawers of all 964 characters), seen protocol on the drawer split
#                (drawers 1-13 train, 14-15 validation, 16-20 test);
#   alphabets    (b) the reality-check protocol on Omniglot's background set: train on some
#                alphabets, tune on others, test on the rest (data.split_by alphabet), from a
#                backbone pretrained the same way on the training alphabets only; at most 30
#                passes (the validation MAP@R still creeps up by 1e-4 a pass at 60);
#   cifar10      (c) CIFAR-10 classification, trials to the full budget with pruning.
#
# Every loss gets the same Optuna budget (TRIALS trials, median pruning) and SEEDS runs at its
# tuned configuration. Each stage resumes where it stopped: run the same line again.
#
#   usage: benchmarks/benchmark_runs.sh DATA_ROOT STAGE ...
#   STAGE: finegrained (its three targets: indic, east-asian, caucasian-cyrillic, each also a
#   stage of its own), alphabets or cifar10
#   DATA_ROOT holds omniglot/ (omniglot_background.npz) and cifar10/ (see docs/install.md).
set -euo pipefail
DATA=${1:?usage: benchmarks/benchmark_runs.sh DATA_ROOT finegrained|alphabets|cifar10|TARGET ...}
shift
OUT=benchmarks/results/benchmark
TRIALS=8
SEEDS=3
LOSSES=softmax,triplet,magnet,pml:ProxyAnchorLoss,pml:MultiSimilarityLoss
LOSSES=$LOSSES,pml:NormalizedSoftmaxLoss,pml:SoftTripleLoss
# one torch thread per run, two runs at once (a 2-core machine)
RUN=(--train.threads 1 --quiet)
OMNIGLOT=(--dataset omniglot --data-dir "$DATA/omniglot" --model.backbone small-cnn
  --model.embedding_dim 64 --train.iterations_per_epoch 0 --train.warm_start_epochs 0)
DRAWERS='test_drawers: [16, 17, 18, 19, 20], val_drawers: [14, 15]'
PRETRAIN=(--loss softmax --train.lr 0.05 --epochs 3 --train.seed 0)

pretrain() {  # pretrain OUT_DIR FLAGS...: once; a finished pretraining is kept
  local dir=$1
  shift
  if [ ! -f "$dir/checkpoint.pt" ]; then
    magnetdml train "${OMNIGLOT[@]}" "${PRETRAIN[@]}" "${RUN[@]}" "$@" --out "$dir" --overwrite
  fi
}

target() {  # target NAME: one fine-grained target (a group of four related alphabets)
  local alphabets
  case $1 in
  indic) alphabets='Bengali, Gujarati, Grantha, Sanskrit' ;;
  east-asian) alphabets='Japanese_(hiragana), Japanese_(katakana), Korean, Burmese_(Myanmar)' ;;
  caucasian-cyrillic) alphabets='Armenian, Mkhedruli_(Georgian), Asomtavruli_(Georgian), Cyrillic' ;;
  esac
  pretrain "$OUT/omniglot-pretrain" --data.options "{$DRAWERS}"
  magnetdml benchmark "${OMNIGLOT[@]}" "${RUN[@]}" --losses "$LOSSES" --protocols seen \
    --data.options "{alphabets: [$alphabets], $DRAWERS}" --data.val_fraction 0 \
    --model.init_from "$OUT/omniglot-pretrain" --trials $TRIALS --seeds $SEEDS \
    --epochs 60 --patience 6 --jobs 2 --out "$OUT/omniglot-$1"
}

for stage in "$@"; do
  case $stage in
  finegrained)
    for name in indic east-asian caucasian-cyrillic; do
      target $name
    done
    ;;
  indic | east-asian | caucasian-cyrillic)
    target "$stage"
    ;;
  alphabets)
    SPLIT=(--data.split_by alphabet --data.unseen_classes 0.3)
    pretrain "$OUT/omniglot-alphabets-pretrain" "${SPLIT[@]}" --data.val_classes 0.3
    magnetdml benchmark "${OMNIGLOT[@]}" "${RUN[@]}" --losses "$LOSSES" --protocols unseen \
      --data.split_by alphabet --model.init_from "$OUT/omniglot-alphabets-pretrain" \
      --trials $TRIALS --seeds $SEEDS --epochs 30 --patience 6 --jobs 2 \
      --out "$OUT/omniglot-alphabets"
    ;;
  cifar10)
    magnetdml benchmark --dataset cifar10 --data-dir "$DATA/cifar10" "${RUN[@]}" \
      --losses softmax,triplet,magnet,pml:ProxyAnchorLoss --protocols seen \
      --model.backbone cifar-cnn --train.iterations_per_epoch 0 --train.warm_start_epochs 1 \
      --train.warm_start_lr 0.05 --trials $TRIALS --seeds $SEEDS --epochs 12 --patience 4 \
      --jobs 2 --out "$OUT/cifar10"
    ;;
  *)
    echo "unknown stage $stage: finegrained, indic, east-asian, caucasian-cyrillic, alphabets or cifar10" >&2
    exit 2
    ;;
  esac
done
