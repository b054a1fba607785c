#!/usr/bin/env bash
# README command 1: set up, then crawl the Python tutorial + FAQ from a local server,
# index them and answer a question with citations. Extra arguments go to `fathom demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${FATHOM_VENV:-.venv}/bin/fathom" demo "$@"
