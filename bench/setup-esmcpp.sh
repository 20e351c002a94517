#!/usr/bin/env bash
# Creates .venv-esmcpp with esm.cpp (PyPI esm-cpp), the CPU inference peer of the
# benchmark (bench/run.ts, case deeploc-*). Idempotent: an existing venv that already
# imports esm_cpp at the pinned version is left as it is. Not needed by .ci/run or tests.
#
#   bash bench/setup-esmcpp.sh [PYTHON]     # PYTHON: the interpreter to base it on (python3)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-esmcpp"
req="$root/bench/requirements-esmcpp.txt"
want="$(sed -n 's/^esm-cpp==//p' "$req")"
if [ -x "$venv/bin/python" ] &&
  [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("esm-cpp"))' 2>/dev/null)" = "$want" ]; then
  echo "esm.cpp $want already in $venv"
  exit 0
fi
"${1:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
"$venv/bin/python" -c 'import esm_cpp, importlib.metadata as m; print("esm.cpp", m.version("esm-cpp"), "in", esm_cpp.__file__)'
