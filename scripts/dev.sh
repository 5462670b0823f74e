#!/usr/bin/env bash
# One entry point for set-up and the two everyday jobs.
#   bash scripts/dev.sh demo   -> create/reuse .venv, install, run the built-in demo
#   bash scripts/dev.sh test   -> create/reuse .venv, install (and Debian's chromium for the
#                                 studio's browser tests, if missing), run ruff, mypy and the
#                                 test-suite, then the cpu_sensitive tests again as on an
#                                 AVX2-only CPU
# Installs use constraints.txt, which pins the CPU build of torch.
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
    # the studio's browser tests drive Debian's Chromium (Playwright's own download is not
    # used); installed once, only when missing
    if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
      sudo_=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo_="sudo"
      $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq chromium \
        || echo "warning: could not install chromium; the studio browser tests will skip" >&2
    fi
    "$VENV/bin/ruff" check src tests benchmarks
    "$VENV/bin/python" -m mypy
    "$VENV/bin/python" -m pytest -q "$@"
    # The tests whose outcome depends on the CPU's instruction set, again with oneDNN and
    # ATen held to AVX2 (no AVX-512, no bfloat16 instructions): one machine covers both kinds.
    echo "== cpu_sensitive tests again with ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 =="
    rc=0
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 \
      "$VENV/bin/python" -m pytest -q -m cpu_sensitive -p no:cacheprovider "$@" || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ] || exit "$rc"   # 5: no such test in the selection
    ;;
  *) echo "usage: bash scripts/dev.sh {demo|test} [args...]" >&2; exit 2 ;;
esac
