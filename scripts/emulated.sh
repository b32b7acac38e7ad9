#!/usr/bin/env bash
# `make wheel-test-aarch64`: the Linux aarch64 wheel in dist/, installed in a fresh virtualenv
# on Debian 12's own aarch64 CPython 3.11, and tests run against it (scripts/wheel_test.py),
# all under qemu's user-mode emulation: an aarch64 Debian chroot made once by debootstrap in
# the matrix cache, its programs run through binfmt_misc. Emulation is some ten times slower
# than the machine, so timing-bound tests are not a verdict on the wheel: by default it runs
# the tests of the core calls (PYTEST_ARGS picks others).
#   scripts/emulated.sh [PYTEST_ARG ...]
# Needs root (apt-get, debootstrap, chroot, binfmt_misc), as on the project's machines.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$(ls dist/blockon-*manylinux*_aarch64.whl 2>/dev/null | head -n 1)
[ -n "$wheel" ] || { echo "no Linux aarch64 wheel in dist/: make wheels first" >&2; exit 1; }
[ $# -gt 0 ] || set -- tests/test_run.py tests/test_submit.py tests/test_engine_paths.py

command -v qemu-aarch64-static >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >&2
binfmt=/proc/sys/fs/binfmt_misc
mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
# Debian's registration, with F: the interpreter is opened now, so it works inside a chroot.
[ -e "$binfmt/qemu-aarch64" ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$binfmt/register"
# Debian 12's CPython 3.11 is the oldest the wheel claims.
root=$(CHROOT_SUITE=bookworm CHROOT_ARCH=arm64 CHROOT_INCLUDE=ca-certificates \
  scripts/sid-chroot.sh python3.11-venv)
. scripts/chroot-mounts.sh
bind_mounts "$root" proc dev
work=/opt/blockon-emulated
rm -rf "${root:?}$work" && mkdir -p "$root$work"
cp -r scripts tests docs examples benches .github pyproject.toml README.md CHANGELOG.md "$root$work"/
cp "$wheel" "$root$work"/
chroot "$root" env -C "$work" HOME=/root PATH=/usr/bin:/bin \
  python3.11 scripts/wheel_test.py "$work/$(basename "$wheel")" "$@"
