#!/usr/bin/env bash
# One entry point for set-up and the two everyday jobs.
#   bash scripts/dev.sh demo   -> create/reuse .venv, install, run the built-in demo
#   bash scripts/dev.sh test   -> create/reuse .venv, install, run ruff, mypy and the test-suite
# Installs use constraints.txt, which pins the CPU build of torch for this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SEQLAB_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# Reinstall only when the dependency declarations change.
stamp="$VENV/.seqlab-install-stamp"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[dev]"
  # Real data shipped inside a registry package (UCR sets, KDD-TSAD_135), files only.
  "$VENV/bin/python" -m pip install -q --no-deps aeon==1.6.0
  echo "$want" > "$stamp"
fi

cmd=${1:-demo}
shift || true
case "$cmd" in
  demo) exec "$VENV/bin/seqlab" demo "$@" ;;
  test)
    "$VENV/bin/ruff" check src tests benchmarks
    "$VENV/bin/python" -m mypy
    exec "$VENV/bin/python" -m pytest -q "$@" ;;
  *) echo "usage: bash scripts/dev.sh {demo|test} [args...]" >&2; exit 2 ;;
esac
