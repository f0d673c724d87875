#!/usr/bin/env bash
# The main job end to end on a fresh machine: set up, build, fetch the model, inspect it,
# and ask it a clinical question.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --quiet
model="$(scripts/fetch-model.sh)"
medllm=./target/release/medllm

echo "== medllm info"
$medllm info "$model"

echo
echo "== medllm generate"
$medllm generate -m "$model" --temp 0 -n 128 --verbose \
  --system "You are a concise clinical assistant." \
  -p "A 67-year-old man has fever, productive cough and right lower lobe crackles. What is the most likely diagnosis, and which test confirms it?"
