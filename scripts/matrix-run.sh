#!/usr/bin/env bash
# The part of `make matrix` that runs inside one CPython's environment, a venv on this
# machine or one in the sid chroot (scripts/matrix.sh, scripts/matrix-chroot.sh), from a
# copy of the checkout as the current directory, so `import blockon` is the installed wheel.
# Installs the wheel and MATRIX_DEPS (those that will not install are reported, and the
# tests that need them skip), then runs the suite into ./pytest.log and prints
#   pytest's summary|GIL after import: X[; not installable: ...]|exact version
# With MATRIX_MODE=bench it runs benches/run_all.py instead, writing ./row.json.
#   scripts/matrix-run.sh PYTHON WHEEL
set -uo pipefail
py=$1
wheel=$2
"$py" -m pip install -q -U pip >&2
"$py" -m pip install -q --force-reinstall --no-deps "$wheel" >&2
missing=()
for dep in ${MATRIX_DEPS:?}; do
  "$py" -m pip install -q "$dep" >/dev/null 2>&1 || missing+=("$dep")
done
if [ "${MATRIX_MODE:-test}" = bench ]; then
  exec "$py" benches/run_all.py --row-json row.json >&2
fi
gil=$("$py" -c 'import sys, blockon; print(getattr(sys, "_is_gil_enabled", lambda: True)())')
exact=$("$py" -c 'import platform; print(platform.python_version())')
summary=$("$py" -m pytest tests -q -p no:randomly 2>&1 | tee pytest.log \
  | grep -E "^=* ?[0-9]+ (passed|failed|error)" | tail -n 1 | tr -d '=' | sed 's/^ *//')
echo "${summary:-pytest did not finish}|GIL after import: $gil${missing[*]:+; not installable: ${missing[*]}}|$exact"
