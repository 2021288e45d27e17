#!/usr/bin/env bash
# One-time set-up of .venv (torch 2.13.0 CPU first, then the package); seconds when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.lada-setup-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/lada" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first and pinned: any other resolution drags in a multi-GB CUDA build
"$VENV/bin/pip" install --disable-pip-version-check -q "torch==2.13.0"
"$VENV/bin/pip" install --disable-pip-version-check -q -e ".[dev,gguf]"
echo "$want" > "$STAMP"
