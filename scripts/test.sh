#!/usr/bin/env bash
# The test command: installs what is missing, fetches the real model, checks formatting
# and lints, then runs every test, including those that need the real model.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/fetch-model.sh all >/dev/null

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

# Tests run in parallel, each with llama.cpp's OpenMP threads; spinning threads of one
# test would starve the others on a small machine (seen: 26 s instead of 208 s).
export OMP_WAIT_POLICY=PASSIVE
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --run-ignored all --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast -- --include-ignored
fi
