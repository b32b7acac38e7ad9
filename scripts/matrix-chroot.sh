#!/usr/bin/env bash
# Runs the test suite on Debian's own binary build of CPython VERSION, inside the Debian sid
# chroot (scripts/sid-chroot.sh, made once by debootstrap into the matrix cache). Used by
# scripts/matrix.sh when the version's source package cannot be downloaded (the mirror this
# project reaches serves the binary packages of 3.14 and 3.15 but answers 404 for their
# sources). The interpreter then runs on the glibc it was built for, which Debian 12's is too
# old to host.
#   scripts/matrix-chroot.sh VERSION WHEEL      prints what scripts/matrix-run.sh prints
#   MATRIX_MODE=bench scripts/matrix-chroot.sh VERSION WHEEL
#       runs benches/run_all.py instead; its row file lands in the cache as bench-VERSION.json
# Needs root (debootstrap, chroot, bind mounts), as on the project's machines.
set -euo pipefail
version=$1
wheel=$2
cache=${BLOCKON_MATRIX_CACHE:-$HOME/.cache/blockon-matrix}
root=$(scripts/sid-chroot.sh "python$version" "python$version-venv" "python$version-dev")
. scripts/chroot-mounts.sh
bind_mounts "$root" proc sys dev dev/pts
venv=/opt/venv-$version
[ -x "$root$venv/bin/python" ] || chroot "$root" "python$version" -m venv "$venv"
work=/opt/work-$version
rm -rf "$root$work" && mkdir -p "$root$work"
cp -r tests benches scripts pyproject.toml docs examples README.md CHANGELOG.md .github "$root$work"/
cp "$wheel" "$root$work"/
inside() { chroot "$root" env -C "$work" HOME=/root BLOCKON_GIT_REV="${BLOCKON_GIT_REV:-}" \
  MATRIX_MODE="${MATRIX_MODE:-test}" MATRIX_DEPS="${MATRIX_DEPS:?}" "$@"; }
inside bash scripts/matrix-run.sh "$venv/bin/python" "$work/$(basename "$wheel")"
if [ "${MATRIX_MODE:-test}" = bench ]; then
  cp "$root$work/row.json" "$cache/bench-$version.json"
else
  cp "$root$work/pytest.log" "$cache/pytest-$version-chroot.log"
fi
