#!/usr/bin/env bash
# Installs what building medllm needs and is not already here: cmake (builds llama.cpp),
# libclang (bindgen), a C++ compiler and git (applies our llama.cpp patches); and what its
# tests need: docker-registry (the `ollama push`/`pull` tests start one on loopback),
# ssh-keygen (the Ollama key tests read a key it writes) and go (the Ollama template tests
# render templates with Go's text/template, as Ollama does), python3-venv (the metric parity
# test installs rouge-score and sacrebleu into a venv), a TrueType font (eval report's chart
# labels), chromium and chromium-driver (the `serve` page test drives the web page in headless
# Chromium), and the Python packages ollama, openai, selenium and jsonschema from the Python
# package index (the `serve` tests talk to the server with the official clients).
# Debian/Ubuntu: uses apt-get (as root, or through sudo). Does nothing when all is present.
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if ! ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so'; then
  missing+=(libclang-dev)
fi

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Pinned to the versions the tests were written against.
if ! python3 -c 'import ollama, openai, selenium, jsonschema, pydantic' >/dev/null 2>&1; then
  echo "setup: installing the Python packages ollama, openai, selenium, jsonschema" >&2
  python3 -m pip install --user --quiet --disable-pip-version-check \
    ollama==0.6.3 openai==3.57.0 selenium==4.51.0 jsonschema==4.26.0
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 2
fi
