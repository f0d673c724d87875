#!/usr/bin/env bash
# Benchmarks on SmolLM2-135M-Instruct (Q4_1). Prints what it measured; timing lives here,
# never in tests. Environment:
#   THREADS      threads (default 2, the figure the issues quote)
#   REPS         repetitions per measurement (default 3; the mean is printed)
#   LLAMA_BENCH  path to a llama-bench binary to run beside medllm, interleaved (optional;
#                build one from any llama.cpp source with `cmake --build . --target llama-bench`)
#   LLAMA_SERVER path to a llama-server binary: the extraction anchor is rerun on this
#                machine (scripts/bench_llama_server.py) beside medllm (optional)
#   SECTIONS     which sections to run (default "generation extraction serve gguf data finetune")
#   DATA_DOCS    synthetic documents for the data benchmark (default 10000)
#   DEID_PUBLIC_GOLD  a labelled public sample in `eval deid` gold format (optional;
#                see docs/benchmarks.md for how it was made)
#   LLAMA_QUANTIZE, LLAMA_EXPORT_LORA  paths to llama-quantize and llama-export-lora: the
#                GGUF tools are timed beside them, interleaved (optional; both build from
#                any llama.cpp source with `cmake --build . --target llama-quantize
#                llama-export-lora`)
#   MEDLLM_BIN   the medllm binary to measure (default: build, then the release binary)
#   FINETUNE_STEPS  windows timed per fine-tuning run (default 8)
#   BENCH_TMP    keep the GGUF section's files (the F32 model, adapter) here between runs
#   GEMMA        0 leaves Gemma 3 270M out of the fine-tuning section (default 1: its
#                LoRA on the Q4_K_M base and full F32 rows run beside SmolLM2's)
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-2}"
reps="${REPS:-3}"
scripts/setup.sh
# MEDLLM_BIN: a medllm binary to measure instead of building one.
if [ -z "${MEDLLM_BIN:-}" ]; then
  cargo build --release --quiet
fi
model="$(scripts/fetch-model.sh)"
medllm="${MEDLLM_BIN:-${CARGO_TARGET_DIR:-./target}/release/medllm}"
bench_dir="${BENCH_DIR:-../shared/bench}"
sections="${SECTIONS:-generation extraction serve gguf data finetune}"
want() { [[ " $sections " == *" $1 "* ]]; }

mean() { awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "n/a" }'; }

echo "# medllm benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $threads threads, $reps runs each"
echo "model: $model"
echo

if want generation; then
echo "## Generation (foundation)"
# The engine alone, measured the way llama-bench does (ppN: one prompt of N tokens in
# batches of 512; tg128: 128 single-token decodes from position 0, no sampling), in the
# same binary.
# Against it: medllm generate on a long prompt (the 16 bench reports, for prompt
# processing; the engine's prompt test takes the same number of tokens) and on a short chat question followed by 128 generated tokens (sampling
# included, end of turn ignored so every run generates 128). Runs are interleaved so
# that drift in the machine's speed hits both sides alike.
long_prompt="$(python3 -c 'import json,sys; print("\n".join(json.loads(l)["text"] for l in open(sys.argv[1])))' "$bench_dir/reports16.jsonl")"
short_prompt="Explain the difference between type 1 and type 2 diabetes."
speed() { sed -n "s/^$1: .*, \([0-9.]*\) tokens\/s.*/\1/p"; }
generate() { $medllm generate -m "$model" -t "$threads" --ctx 2048 --verbose "$@" 2>&1 >/dev/null; }
# The engine's prompt test uses as many tokens as the long prompt has.
long_tokens="$(generate --raw -n 1 -p "$long_prompt" | sed -n 's/^prompt processing: \([0-9]*\) tokens.*/\1/p')"
engine_pp_runs=(); engine_tg_runs=(); engine_pp512_runs=(); pp_runs=(); greedy_runs=(); sampled_runs=()
ref_pp_runs=(); ref_tg_runs=()
for _ in $(seq "$reps"); do
  engine="$($medllm dev bench-engine -m "$model" -t "$threads" --repetitions 1 --prompt-tokens "$long_tokens")"
  engine_pp_runs+=("$(awk '/^pp/ {print $2}' <<<"$engine")")
  engine_tg_runs+=("$(awk '/^tg/ {print $2}' <<<"$engine")")
  engine_pp512_runs+=("$($medllm dev bench-engine -m "$model" -t "$threads" --repetitions 1 --gen-tokens 1 | awk '/^pp/ {print $2}')")
  if [ -n "${LLAMA_BENCH:-}" ]; then
    ref="$("$LLAMA_BENCH" -m "$model" -t "$threads" -p 512 -n 128 -r 1 -o jsonl 2>/dev/null)"
    ref_pp_runs+=("$(python3 -c 'import sys,json; print(next(r["avg_ts"] for r in map(json.loads, sys.stdin) if r["n_prompt"]))' <<<"$ref")")
    ref_tg_runs+=("$(python3 -c 'import sys,json; print(next(r["avg_ts"] for r in map(json.loads, sys.stdin) if r["n_gen"]))' <<<"$ref")")
  fi
  pp_runs+=("$(generate --raw -n 1 -p "$long_prompt" | speed "prompt processing")")
  greedy_runs+=("$(generate -n 128 --ignore-eos --temp 0 -p "$short_prompt" | speed generation)")
  sampled_runs+=("$(generate -n 128 --ignore-eos --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --seed 1 -p "$short_prompt" | speed generation)")
done
engine_pp="$(printf '%s\n' "${engine_pp_runs[@]}" | mean)"
engine_tg="$(printf '%s\n' "${engine_tg_runs[@]}" | mean)"
engine_pp512="$(printf '%s\n' "${engine_pp512_runs[@]}" | mean)"
gen_pp="$(printf '%s\n' "${pp_runs[@]}" | mean)"
gen_greedy="$(printf '%s\n' "${greedy_runs[@]}" | mean)"
gen_sampled="$(printf '%s\n' "${sampled_runs[@]}" | mean)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }

printf '| %-44s | %12s | %12s |\n' "what" "tokens/s" "of engine"
printf '| %-44s | %12s | %12s |\n' "--------------------------------------------" "------------" "------------"
printf '| %-44s | %12s | %12s |\n' "engine pp$long_tokens (dev bench-engine)" "$engine_pp" "100%"
printf '| %-44s | %12s | %12s |\n' "engine tg128 (dev bench-engine)" "$engine_tg" "100%"
printf '| %-44s | %12s | %12s |\n' "engine pp512 (dev bench-engine)" "$engine_pp512" ""
printf '| %-44s | %12s | %12s |\n' "generate: $long_tokens-token prompt" "$gen_pp" "$(ratio "$gen_pp" "$engine_pp")"
printf '| %-44s | %12s | %12s |\n' "generate: 128 tokens, greedy" "$gen_greedy" "$(ratio "$gen_greedy" "$engine_tg")"
printf '| %-44s | %12s | %12s |\n' "generate: 128 tokens, temp/top-k/top-p/min-p" "$gen_sampled" "$(ratio "$gen_sampled" "$engine_tg")"

if [ -n "${LLAMA_BENCH:-}" ]; then
  ref_pp="$(printf '%s\n' "${ref_pp_runs[@]}" | mean)"
  ref_tg="$(printf '%s\n' "${ref_tg_runs[@]}" | mean)"
  printf '| %-44s | %12s | %12s |\n' "llama-bench pp512 (interleaved)" "$ref_pp" "$(ratio "$ref_pp" "$engine_pp512")"
  printf '| %-44s | %12s | %12s |\n' "llama-bench tg128 (interleaved)" "$ref_tg" "$(ratio "$ref_tg" "$engine_tg")"
  printf '| %-44s | %12s | %12s |\n' "generate greedy / llama-bench tg128" "" "$(ratio "$gen_greedy" "$ref_tg")"
fi
fi


if want extraction; then
echo
echo "## Extraction"
# The 16 reports and schema on which the issues' anchors were measured (llama-server,
# 4 slots: 39.2 docs/min, 2/16 valid, on a faster machine of this kind), then synthetic
# reports with built-in schemas. docs/min from medllm's own summary line; valid and
# grounded rates from eval-style counting of the records.
extract_row() {
  local label="$1"; shift
  local out; out="$(mktemp)"
  local summary
  summary="$($medllm extract -v -m "$model" -t "$threads" "$@" -o "$out" 2>&1 | grep -E '^(extracted|time:|speculation:)')"
  python3 - "$out" "$label" "$summary" <<'PY'
import json, re, sys
path, label, summary = sys.argv[1:]
constraint = re.search(r"costs ([0-9.]+)% of decoding", summary).group(1)
records = [json.loads(l) for l in open(path)]
valid = sum(r["valid"] for r in records)
grounded = sum(len(r["grounding"]) for r in records)
strings = grounded + sum(len(r["ungrounded"]) for r in records)
generated = sum(r["tokens"]["generated"] for r in records)
m = re.search(r"in ([0-9.]+) s \(([0-9.]+) docs/min\)", summary)
seconds, per_min = float(m.group(1)), float(m.group(2))
s = re.search(r"speculation: ([0-9]+) of ([0-9]+) drafted", summary)
drafts = f"{s.group(1)}/{s.group(2)}" if s and int(s.group(2)) else "-"
print(f"| {label:<44} | {per_min:9.1f} | {valid:>3}/{len(records):<3} | {100*grounded/max(strings,1):7.1f}% | {generated/seconds:9.1f} | {constraint:>9}% | {drafts:>11} |")
PY
  rm -f "$out"
}
# "constraint": time choosing tokens (masks, sampling, forced text) as a share of the
# time llama.cpp spends decoding: constrained generation runs at 1/(1+that) of the
# unconstrained speed.
# "accepted": draft tokens of speculative copying accepted / drafted.
printf '| %-44s | %9s | %7s | %8s | %9s | %10s | %11s |\n' "run" "docs/min" "valid" "grounded" "gen tok/s" "constraint" "accepted"
printf '| %-44s | %9s | %7s | %8s | %9s | %10s | %11s |\n' "--------------------------------------------" "---------" "-------" "--------" "---------" "----------" "-----------"
for p in 1 4 8; do
  extract_row "reports16, schema16, --parallel $p" --schema "$bench_dir/schema16.json" -P "$p" "$bench_dir/reports16.jsonl"
done
extract_row "reports16, schema16, --parallel 4, --speculate" --schema "$bench_dir/schema16.json" -P 4 --speculate "$bench_dir/reports16.jsonl"

if [ -n "${LLAMA_SERVER:-}" ]; then
  read -r per_min ok total < <(python3 scripts/bench_llama_server.py "$LLAMA_SERVER" "$model" "$bench_dir" "$threads")
  printf '| %-44s | %9s | %7s | %8s | %9s | %10s | %11s |\n' "llama-server -np 4, json_schema (same machine)" "$per_min" "$ok/$total" "-" "-" "-" "-"
fi
dev=tests/fixtures/extract_dev/reports.jsonl
for schema in discharge_summary clinic_note medication_list; do
  extract_row "extract_dev (24), $schema, --parallel 4" --schema "$schema" -P 4 "$dev"
done
extract_row "extract_dev (24), discharge_summary, --extractive" --schema discharge_summary -P 4 --extractive "$dev"
extract_row "extract_dev (24), discharge_summary, --extractive, --speculate" --schema discharge_summary -P 4 --extractive --speculate "$dev"
fi

if want serve; then
echo "## Server: structured extraction over HTTP"
# medllm serve --parallel 4, the 16 bench reports from 8 concurrent clients: requests/min,
# p50/p99 latency and replies valid under the schema, for OpenAI-style json_schema chat
# requests (as llama-server's anchor: 39.2 docs/min, 2/16 valid) and for /v1/extract.
python3 scripts/bench_serve.py "$medllm" "$model" "$bench_dir" "$threads" "$reps"
echo
fi

if want data; then
echo
echo "## Data pipeline (no model)"
# Wall time and peak memory of each command, from the kernel's accounting of the child.
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
# A failed run must not report a speed.
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
seconds = time.monotonic() - start
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{seconds:.2f} {peak_mib:.0f}")
PY
}
n_docs="${DATA_DOCS:-10000}"
data_work="$(mktemp -d)"
printf '| %-44s | %9s | %8s | %9s |\n' "run ($n_docs synthetic documents)" "seconds" "docs/s" "peak MiB"
printf '| %-44s | %9s | %8s | %9s |\n' "--------------------------------------------" "---------" "--------" "---------"
data_row() {
  local label="$1"; shift
  read -r seconds peak < <(measure "$@")
  printf '| %-44s | %9s | %8.0f | %9s |\n' "$label" "$seconds" "$(awk -v n="$n_docs" -v s="$seconds" 'BEGIN { print n / s }')" "$peak"
}
for _ in $(seq "$reps"); do
  rm -rf "$data_work/corpus" "$data_work/data"
  data_row "synth" $medllm synth -q -o "$data_work/corpus" --n "$n_docs" --seed 1
  data_row "deid (JSONL, redact, with --spans)" $medllm deid -q "$data_work/corpus/documents.jsonl" -o "$data_work/deid.jsonl" --spans "$data_work/spans.jsonl"
  data_row "deid (JSONL, surrogate)" $medllm deid -q --mode surrogate --date-shift-seed 3 "$data_work/corpus/documents.jsonl" -o "$data_work/deid.jsonl"
  data_row "prepare (synth folder, redact)" $medllm prepare -q "$data_work/corpus" -o "$data_work/data" --seed 1
done
echo
echo "De-identification quality on a held-out synthetic corpus (seed 5551212, 2000 documents):"
$medllm synth -q -o "$data_work/heldout" --n 2000 --seed 5551212
$medllm eval deid --gold "$data_work/heldout/documents.jsonl"
# The project's hand-marked corpora (written independently of the generator): dev is what
# the detector was developed on, heldout was never looked at and is only measured.
for set in dev heldout; do
  echo
  echo "On the hand-marked corpus tests/fixtures/deid_corpus/$set:"
  $medllm eval deid --gold "tests/fixtures/deid_corpus/$set"
done
# Throughput on those documents (longer and more varied than synth's): the held-out
# corpus repeated to 6,000 documents, as JSON lines.
python3 - "tests/fixtures/deid_corpus/heldout" "$data_work/marked.jsonl" <<'PY'
import json, os, re, sys
folder, out = sys.argv[1], sys.argv[2]
texts = [re.sub(r"⟦[^|⟧]*\|([^⟧]*)⟧", r"\1", open(os.path.join(folder, f), encoding="utf-8").read())
         for f in sorted(os.listdir(folder)) if f.endswith(".txt")]
with open(out, "w", encoding="utf-8") as sink:
    for i in range(6000):
        sink.write(json.dumps({"id": f"d{i}", "text": texts[i % len(texts)]}) + "\n")
PY
printf '| %-44s | %9s | %8s | %9s |\n' "run (6000 hand-marked documents)" "seconds" "docs/s" "peak MiB"
n_docs=6000
for _ in $(seq "$reps"); do
  data_row "deid (JSONL, redact, hand-marked corpus)" $medllm deid -q "$data_work/marked.jsonl" -o "$data_work/deid-marked.jsonl"
done
if [ -n "${DEID_PUBLIC_GOLD:-}" ]; then
  echo
  echo "On the public sample $DEID_PUBLIC_GOLD:"
  $medllm eval deid --gold "$DEID_PUBLIC_GOLD"
fi
rm -rf "$data_work"
fi

if want gguf; then
echo
echo "## GGUF tools"
# Quantize and merge SmolLM2-135M on $threads threads, each run timed whole (process start
# to exit, output synced to disk for medllm; llama.cpp's tools do not sync). The F32 model
# is made by medllm itself; the adapter is a random rank-16 PEFT adapter on all 210 linear
# tensors (30 blocks × q/k/v/o/gate/up/down), converted with `medllm lora convert`.
work="${BENCH_TMP:-$(mktemp -d)}"
mkdir -p "$work"
f32="$work/smol-f32.gguf"
[ -f "$f32" ] || $medllm quantize "$model" "$f32" --type f32 -t "$threads" -q
$medllm dev peft-adapter --base "$model" -o "$work/peft16" --rank 16 --alpha 32 -q
$medllm lora convert --peft "$work/peft16" --base "$model" -o "$work/adapter16.gguf" -q
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'; }
stats() { sort -n | awk '{ v[NR] = $1; s += $1 } END { printf "%.2f (min %.2f)", s / NR, v[1] }'; }
declare -A ours ref
cases=(q8 q4km f32 merge_q41 merge_f32)
for _ in $(seq "$reps"); do
  ours[q8]+="$(seconds $medllm quantize "$f32" "$work/out.gguf" --type q8_0 -t "$threads" -q)"$'\n'
  ours[q4km]+="$(seconds $medllm quantize "$f32" "$work/out.gguf" --type q4_k_m -t "$threads" -q)"$'\n'
  ours[f32]+="$(seconds $medllm quantize "$model" "$work/out.gguf" --type f32 -t "$threads" -q)"$'\n'
  ours[merge_q41]+="$(seconds $medllm lora merge --base "$model" --adapter "$work/adapter16.gguf" -o "$work/out.gguf" -t "$threads" -q)"$'\n'
  ours[merge_f32]+="$(seconds $medllm lora merge --base "$f32" --adapter "$work/adapter16.gguf" -o "$work/out.gguf" -t "$threads" -q)"$'\n'
  if [ -n "${LLAMA_QUANTIZE:-}" ]; then
    ref[q8]+="$(seconds "$LLAMA_QUANTIZE" "$f32" "$work/ref.gguf" q8_0 "$threads")"$'\n'
    ref[q4km]+="$(seconds "$LLAMA_QUANTIZE" "$f32" "$work/ref.gguf" q4_k_m "$threads")"$'\n'
    ref[f32]+="$(seconds "$LLAMA_QUANTIZE" --allow-requantize "$model" "$work/ref.gguf" f32 "$threads")"$'\n'
  fi
  if [ -n "${LLAMA_EXPORT_LORA:-}" ]; then
    ref[merge_q41]+="$(seconds "$LLAMA_EXPORT_LORA" -m "$model" --lora "$work/adapter16.gguf" -o "$work/ref.gguf" -t "$threads")"$'\n'
    ref[merge_f32]+="$(seconds "$LLAMA_EXPORT_LORA" -m "$f32" --lora "$work/adapter16.gguf" -o "$work/ref.gguf" -t "$threads")"$'\n'
  fi
done
declare -A label=(
  [q8]="quantize F32 → Q8_0" [q4km]="quantize F32 → Q4_K_M" [f32]="quantize Q4_1 → F32"
  [merge_q41]="merge rank 16 into Q4_1 (writes Q4_1)" [merge_f32]="merge rank 16 into F32"
)
declare -A anchor=([q8]="0.51" [q4km]="0.97" [f32]="1.08" [merge_q41]="0.43 (F16 out)" [merge_f32]="1.63")
declare -A goal=([q8]="≤ 1.05× ref" [q4km]="≤ 1.05× ref" [f32]="≤ 1.05× ref" [merge_q41]="≤ 1.0" [merge_f32]="≤ 1.2")
printf '| %-40s | %-20s | %-20s | %-15s | %-12s |\n' "what" "medllm s" "llama.cpp s (here)" "issue's figure" "goal"
printf '| %-40s | %-20s | %-20s | %-15s | %-12s |\n' "----------------------------------------" "--------------------" "--------------------" "---------------" "------------"
for c in "${cases[@]}"; do
  mine="$(printf '%s' "${ours[$c]}" | stats)"
  theirs="-"
  [ -n "${ref[$c]:-}" ] && theirs="$(printf '%s' "${ref[$c]}" | stats)"
  printf '| %-40s | %-20s | %-20s | %-15s | %-12s |\n' "${label[$c]}" "$mine" "$theirs" "${anchor[$c]}" "${goal[$c]}"
done
echo "merged Q4_1 size: $($medllm lora merge --base "$model" --adapter "$work/adapter16.gguf" -o "$work/out.gguf" -t "$threads" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["output_file_bytes"])') bytes (base $(stat -c %s "$model"))"
[ -n "${BENCH_TMP:-}" ] || rm -rf "$work"
fi

if want finetune; then
echo
echo "## Fine-tuning"
# Tokens/s and peak RSS of medllm finetune on SmolLM2-135M dequantised to F32, context 256,
# as llama.cpp's llama-finetune anchor (full F32, ctx 256, 2 threads: ~115 tokens/s, 2.5 GB):
# LoRA rank 16 on all seven linear kinds against full fine-tuning, and LoRA on the Q4_1
# base as loaded. Plain text of synthetic reports, loss on every token, one step per window.
ft_work="$(mktemp -d)"
$medllm synth -q -o "$ft_work/corpus" --n 300 --seed 2
python3 - "$ft_work/corpus/documents.jsonl" "$ft_work/text.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        out.write(json.dumps({"text": json.loads(line)["text"]}) + "\n")
PY
$medllm quantize -q "$model" "$ft_work/f32.gguf" --type f32
gemma=""
if [ "${GEMMA:-1}" != 0 ]; then
  gemma="$(scripts/fetch-model.sh gemma3)"
  $medllm quantize -q "$gemma" "$ft_work/gemma-f32.gguf" --type f32
fi
steps="${FINETUNE_STEPS:-8}"
printf '| %-36s | %9s | %9s |\n' "run (ctx 256, $steps steps)" "tokens/s" "peak MiB"
printf '| %-36s | %9s | %9s |\n' "------------------------------------" "---------" "---------"
ft_row() {
  local label="$1"; shift
  local out="$ft_work/run"
  rm -rf "$out"
  local peak
  peak=$( { /usr/bin/time -f "%M" $medllm finetune -q --json "$@" --train "$ft_work/text.jsonl" --text -o "$out" \
    --ctx 256 --overlong truncate --max-steps "$steps" --checkpoint-every 0 -t "$threads" > "$ft_work/report.json"; } 2>&1 | tail -1)
  local speed
  speed=$(python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["tokens_per_s"])' "$ft_work/report.json")
  printf '| %-36s | %9s | %9s |\n' "$label" "$speed" "$((peak / 1024))"
}
for _ in $(seq "$reps"); do
  ft_row "LoRA rank 16, F32 base" -m "$ft_work/f32.gguf" --lora-rank 16
  ft_row "full, F32" -m "$ft_work/f32.gguf" --full
  ft_row "LoRA rank 16, Q4_1 base" -m "$model" --lora-rank 16
  if [ -n "$gemma" ]; then
    ft_row "Gemma 3 270M LoRA 16, Q4_K_M base" -m "$gemma" --lora-rank 16
    ft_row "Gemma 3 270M full, F32" -m "$ft_work/gemma-f32.gguf" --full
  fi
done
rm -rf "$ft_work"
fi
