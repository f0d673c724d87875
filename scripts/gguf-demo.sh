#!/usr/bin/env bash
# The GGUF toolchain end to end on SmolLM2-135M: a PEFT LoRA adapter → GGUF adapter →
# merged model → quantized model → quality against the merged F32 model. The adapter is
# a random rank-16 PEFT adapter written by `medllm dev peft-adapter` in PEFT's own layout;
# a real one comes from PEFT's `save_pretrained` (safetensors) the same way.
# Environment: MEDLLM_BIN (a medllm binary; default: build one), WORK (folder to keep the
# files in; default: a temporary one), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MEDLLM_BIN:-}" ]; then
  scripts/setup.sh
  cargo build --release --quiet
fi
medllm="${MEDLLM_BIN:-${CARGO_TARGET_DIR:-./target}/release/medllm}"
model="$(scripts/fetch-model.sh)"
threads="${THREADS:-2}"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
run() { echo "\$ medllm ${*//$work\//}"; "$medllm" "$@"; echo; }

# The reference: the model at full precision (a conversion from Hugging Face gives F16/F32;
# here the shipped Q4_1 is dequantized).
run quantize "$model" "$work/base-f32.gguf" --type f32 -t "$threads"
run dev peft-adapter --base "$work/base-f32.gguf" -o "$work/peft" --rank 16 --alpha 32
run lora convert --peft "$work/peft" --base "$work/base-f32.gguf" -o "$work/adapter.gguf"
run lora merge --base "$work/base-f32.gguf" --adapter "$work/adapter.gguf" -o "$work/merged-f32.gguf" -t "$threads"
run quantize "$work/merged-f32.gguf" "$work/merged-q4km.gguf" --type q4_k_m -t "$threads"
# Or straight into the quantized base, keeping Q4_1:
run lora merge --base "$model" --adapter "$work/adapter.gguf" -o "$work/merged-q41.gguf" -t "$threads"

python3 -c 'import json,sys; print("\n\n".join(json.loads(l)["text"] for l in open(sys.argv[1])))' \
  tests/fixtures/extract_dev/reports.jsonl > "$work/notes.txt"
run quality --ref "$work/merged-f32.gguf" "$work/merged-q4km.gguf" --text "$work/notes.txt" --ctx 256 -t "$threads"
run quality --ref "$work/merged-f32.gguf" "$work/merged-q41.gguf" --text "$work/notes.txt" --ctx 256 -t "$threads"
run quality --ref "$work/base-f32.gguf" "$work/merged-f32.gguf" --text "$work/notes.txt" --ctx 256 -t "$threads"
echo "\$ medllm diff merged-f32.gguf merged-q4km.gguf | head"
"$medllm" diff "$work/merged-f32.gguf" "$work/merged-q4km.gguf" | head
[ -n "${WORK:-}" ] || rm -rf "$work"
