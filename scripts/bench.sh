#!/usr/bin/env bash
# Benchmarks on SmolLM2-135M-Instruct (Q4_1). Prints what it measured; timing lives here,
# never in tests. Environment:
#   THREADS      threads (default 2, the figure the issues quote)
#   REPS         repetitions per measurement (default 3; the mean is printed)
#   LLAMA_BENCH  path to a llama-bench binary to run beside medllm (optional)
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-2}"
reps="${REPS:-3}"
scripts/setup.sh
cargo build --release --quiet
model="$(scripts/fetch-model.sh)"
medllm=./target/release/medllm
bench_dir="${BENCH_DIR:-../shared/bench}"

mean() { awk '{ s += $1; n++ } END { if (n) printf "%.1f", s / n; else print "n/a" }'; }

echo "# medllm benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $threads threads, $reps runs each"
echo "model: $model"
echo

echo "## Generation (foundation)"
# The engine alone, measured the way llama-bench does (pp512: one batch of 512 tokens;
# tg128: 128 single-token decodes, no sampling), in the same binary and library.
engine="$($medllm dev bench-engine -m "$model" -t "$threads" --repetitions "$reps")"
engine_pp="$(awk '/^pp/ {print $2}' <<<"$engine")"
engine_tg="$(awk '/^tg/ {print $2}' <<<"$engine")"

# medllm generate: a ~1,000-token prompt (the 16 bench reports), then 128 generated
# tokens, sampling included, end-of-turn ignored so every run generates 128.
prompt="$(python3 -c 'import json,sys; print("\n".join(json.loads(l)["text"] for l in open(sys.argv[1])))' "$bench_dir/reports16.jsonl")"
run_generate() {
  $medllm generate -m "$model" -t "$threads" --ctx 2048 --raw -n 128 --ignore-eos --verbose "$@" -p "$prompt" 2>&1 >/dev/null
}
pp_runs=(); greedy_runs=(); sampled_runs=()
for _ in $(seq "$reps"); do
  out="$(run_generate --temp 0)"
  pp_runs+=("$(sed -n 's/^prompt processing: .*, \([0-9.]*\) tokens\/s/\1/p' <<<"$out")")
  greedy_runs+=("$(sed -n 's/^generation: .*, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$out")")
  out="$(run_generate --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --seed 1)"
  sampled_runs+=("$(sed -n 's/^generation: .*, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$out")")
done
gen_pp="$(printf '%s\n' "${pp_runs[@]}" | mean)"
gen_greedy="$(printf '%s\n' "${greedy_runs[@]}" | mean)"
gen_sampled="$(printf '%s\n' "${sampled_runs[@]}" | mean)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "n/a" }'; }

printf '| %-44s | %12s | %12s |\n' "what" "tokens/s" "of engine"
printf '| %-44s | %12s | %12s |\n' "--------------------------------------------" "------------" "------------"
printf '| %-44s | %12s | %12s |\n' "engine pp512 (dev bench-engine)" "$engine_pp" "100%"
printf '| %-44s | %12s | %12s |\n' "engine tg128 (dev bench-engine)" "$engine_tg" "100%"
printf '| %-44s | %12s | %12s |\n' "generate: prompt processing (~1k tokens)" "$gen_pp" "$(ratio "$gen_pp" "$engine_pp")"
printf '| %-44s | %12s | %12s |\n' "generate: 128 tokens, greedy" "$gen_greedy" "$(ratio "$gen_greedy" "$engine_tg")"
printf '| %-44s | %12s | %12s |\n' "generate: 128 tokens, temp/top-k/top-p/min-p" "$gen_sampled" "$(ratio "$gen_sampled" "$engine_tg")"

if [ -n "${LLAMA_BENCH:-}" ]; then
  echo
  echo "llama-bench ($LLAMA_BENCH):"
  "$LLAMA_BENCH" -m "$model" -t "$threads" -p 512 -n 128 -r "$reps" -o md 2>/dev/null | grep -E '^\|'
fi
