#!/usr/bin/env bash
# Magnet vs triplet vs softmax on Fashion-MNIST, same backbone (small-cnn), same seed and the
# same budget: 6 epochs x 125 iterations x 48 images (Magnet M x D = 12 x 4, the others
# P x K = 8 x 6: Fashion-MNIST has only 10 classes) = 36,000 images. Test error after every
# epoch. data.val_fraction 0.8 trains on a stratified 20% of the training set (12,000
# images) so that each evaluation's embedding pass fits the loaded 2-core machine; the test
# split is the full 10,000. Runs (with checkpoints) stay in runs/ (git-ignored); a rerun
# skips finished ones. Then the same for Magnet with K = 8 clusters per class (ablation).
set -euo pipefail
# DATA_ROOT: the folder holding fashion-mnist/ (default: ../shared/data beside the repo)
cd "$(dirname "$0")/../../.."
here=benchmarks/results/compare_fashion_mnist
common=(--dataset fashion-mnist --data-dir "${DATA_ROOT:-../shared/data}/fashion-mnist"
        --data.val_fraction 0.8 --model.backbone small-cnn --epochs 6
        --train.iterations_per_epoch 125 --sampler.classes_per_batch 8
        --sampler.examples_per_class 6 --train.threads 1 --eval.plots false --quiet)
nice .venv/bin/python -m magnetdml compare --losses magnet,triplet,softmax "${common[@]}" \
    --out runs/compare_fashion_mnist
cp runs/compare_fashion_mnist/results.{csv,md,json} runs/compare_fashion_mnist/error_curves.png \
    "$here/"
nice .venv/bin/python -m magnetdml compare --losses magnet --index.clusters_per_class 8 \
    "${common[@]}" --out runs/compare_fashion_mnist_k8
mkdir -p "$here/magnet_k8"
cp runs/compare_fashion_mnist_k8/results.{csv,md,json} \
    runs/compare_fashion_mnist_k8/error_curves.png "$here/magnet_k8/"
