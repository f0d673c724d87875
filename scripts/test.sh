#!/usr/bin/env bash
# The test command: installs what is missing, fetches the real model, checks formatting
# and lints, then runs every test, including those that need the real model.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/fetch-model.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --release --workspace --run-ignored all --no-fail-fast
else
  cargo test --release --workspace --no-fail-fast -- --include-ignored
fi
