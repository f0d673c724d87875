#!/usr/bin/env bash
# Re-makes three labelled public de-identification samples as gold files for
# `medllm eval deid --gold FILE`. Nothing from them is kept in this repository: the packages
# are downloaded from the Python package index at run time, checked against the sha256 they
# had when medllm was first measured on them, and converted by deid_public_samples.py:
#   philter-lite 0.6.0        five i2b2 2014 notes with their PHI tags    -> philter-lite.jsonl
#   deidgate 0.1.0 (MIT)      fifteen hand-written Safe Harbor sentences   -> deidgate.jsonl
#   presidio-evaluator 0.3.2  1,500 synthetic template sentences (sdist)   -> presidio.jsonl
# Files go to DIR (default ${MEDLLM_DATA:-~/.cache/medllm/data}/deid-public): the archives
# under DIR/archives/ (downloaded once; a present archive with the right sha256 is reused),
# the gold files next to them. Prints documents and gold spans per category for each file.
# Usage: scripts/deid-public-samples.sh [DIR]
# Then:  medllm eval deid --gold DIR/presidio.jsonl
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${MEDLLM_DATA:-$HOME/.cache/medllm/data}/deid-public}"
archives="$dir/archives"
python="${PYTHON:-python3}"

# package==version  archive name  sha256 of the archive
samples=(
  "philter-lite==0.6.0 philter_lite-0.6.0.tar.gz f4af81d53668c208aa911c7924412266fcc53a1783ee927a031b81437079909f"
  "deidgate==0.1.0 deidgate-0.1.0.tar.gz d9117f7a4e8d750eec534caf1fa9818308f7f70df4d9cbddd2da46d7754b80bf"
  "presidio-evaluator==0.3.2 presidio_evaluator-0.3.2.tar.gz 2ec1be3710a2843553a5fb185916d85b0fa174fb9e1927e03ea83152fdc95eb1"
)

command -v "$python" >/dev/null || { echo "deid-public-samples: $python not found" >&2; exit 1; }
"$python" -m pip --version >/dev/null 2>&1 \
  || { echo "deid-public-samples: pip is not available for $python" >&2; exit 1; }
mkdir -p "$archives"

fetch() {
  local package="$1" archive="$2" sha256="$3" work log
  if [ -f "$archives/$archive" ] && echo "$sha256  $archives/$archive" | sha256sum --check --status; then
    return 0
  fi
  echo "deid-public-samples: downloading $package (sdist) from the Python package index" >&2
  work="$(mktemp -d)"
  log="$work/pip.log"
  # Only the source archive: no dependencies, no wheel. pip may fetch the package's build
  # backend to read its metadata; nothing is installed.
  if ! "$python" -m pip download --no-deps --no-binary :all: --disable-pip-version-check \
      --quiet --retries 1 --timeout 20 -d "$work" "$package" >"$log" 2>&1; then
    if ! [ -f "$work/$archive" ]; then
      tail -n 5 "$log" >&2
      rm -rf "$work"
      echo "deid-public-samples: could not download $package. Is the network reachable, and" \
        "the Python package index (or the mirror pip is configured with, PIP_INDEX_URL)?" >&2
      exit 1
    fi
  fi
  if ! [ -f "$work/$archive" ]; then
    echo "deid-public-samples: pip did not produce $archive; got: $(ls "$work" | grep -v pip.log | tr '\n' ' ')" >&2
    rm -rf "$work"
    exit 1
  fi
  if ! echo "$sha256  $work/$archive" | sha256sum --check --status; then
    echo "deid-public-samples: $archive does not have the expected sha256 $sha256;" \
      "refusing to use it" >&2
    rm -rf "$work"
    exit 1
  fi
  mv "$work/$archive" "$archives/$archive"
  rm -rf "$work"
}

for sample in "${samples[@]}"; do
  # shellcheck disable=SC2086
  fetch $sample
done

"$python" "$here/deid_public_samples.py" "$dir"
echo "deid-public-samples: gold files in $dir; score one with: medllm eval deid --gold $dir/presidio.jsonl" >&2
