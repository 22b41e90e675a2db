#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the project's requirements into it.
#
#   bash scripts/setup.sh          # what the app needs
#   bash scripts/setup.sh --dev    # plus what the tests and benchmarks need
#
# Safe to run again: it reinstalls only when a requirements file changed.
# torch is installed first and pinned: any other version, or an unpinned torch pulled in by another
# package, would download several GB of CUDA wheels on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)." >&2
  return 1
}

if [ ! -x .venv/bin/python ]; then
  python=$(pick_python)
  echo "Creating .venv with $($python --version)"
  "$python" -m venv .venv
fi

stamp=.venv/.installed-$(cat requirements.txt "$requirements" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing $requirements into .venv (about a minute)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  touch "$stamp"
fi
