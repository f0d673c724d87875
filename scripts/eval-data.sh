#!/usr/bin/env bash
# Builds synthetic held-out data for `medllm eval report`, deterministically (fixed seeds):
#   DIR/corpus/        medllm synth (documents with gold PHI spans and gold extractions)
#   DIR/prepared/      medllm prepare of that corpus; its test split feeds the summary task
#   DIR/mcq.jsonl      questions derived from the corpus's gold (medllm eval synth-mcq)
#   DIR/heldout.jsonl  a second corpus, never prepared, for perplexity
#   DIR/suite.toml     scripts/eval-suite.toml
# The seeds differ from those of the training data the docs use (synth --seed 3), so nothing
# here was trained on. Usage: scripts/eval-data.sh DIR   (MEDLLM=path/to/medllm, N=docs)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
medllm="${MEDLLM:-medllm}"
dir="${1:?usage: scripts/eval-data.sh DIR}"
n="${N:-400}"
seed="${SEED:-90210}"

mkdir -p "$dir"
# synth refuses a folder with files in it; these two are this script's own, rebuilt whole.
rm -rf "$dir/corpus" "$dir/heldout-corpus"
"$medllm" synth -q -o "$dir/corpus" --n "$n" --seed "$seed"
"$medllm" prepare -q "$dir/corpus" -o "$dir/prepared" --seed "$seed" || [ $? -eq 1 ]
"$medllm" eval synth-mcq -q "$dir/corpus/documents.jsonl" -o "$dir/mcq.jsonl" --seed "$seed"
"$medllm" synth -q -o "$dir/heldout-corpus" --n 60 --seed "$((seed + 1))"
cp "$dir/heldout-corpus/documents.jsonl" "$dir/heldout.jsonl"
cp "$here/eval-suite.toml" "$dir/suite.toml"
echo "eval data in $dir; run: $medllm eval report --base MODEL.gguf --lora ADAPTER.gguf --suite $dir/suite.toml -o REPORT_DIR" >&2
