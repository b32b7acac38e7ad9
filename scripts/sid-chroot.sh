#!/usr/bin/env bash
# The Debian sid chroot that `make matrix` (scripts/matrix-chroot.sh), `make cross-check` and
# `make wheels` (scripts/cross.sh) share: made once by debootstrap in the matrix cache, outside
# the repository, with the packages each caller names installed when missing. Sid carries
# what Debian 12 does not: the newest CPythons, and a rustc with rust-src, which builds the
# standard library for other systems.
#   scripts/sid-chroot.sh [PACKAGE ...]     prints the chroot's root directory
# CHROOT_SUITE, CHROOT_ARCH and CHROOT_INCLUDE make another one beside it (scripts/emulated.sh:
# Debian 12 for aarch64, whose programs run through qemu and binfmt_misc, which it sets up).
# Callers mount /proc and /dev themselves, for as long as they need them. Needs root
# (debootstrap, chroot), as on the project's machines.
set -euo pipefail
cache=${BLOCKON_MATRIX_CACHE:-$HOME/.cache/blockon-matrix}
suite=${CHROOT_SUITE:-sid}
arch=${CHROOT_ARCH:-}
include=${CHROOT_INCLUDE-gcc,libc6-dev,ca-certificates}
root=$cache/$suite${arch:+-$arch}
mkdir -p "$cache"
if [ ! -x "$root/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  # No mirror named: debootstrap's default is Debian's own.
  debootstrap ${arch:+--arch="$arch"} --variant=minbase --include="$include" "$suite" "$root" >&2
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip and cargo inside use the host's configuration and certificate authorities, as outside.
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
missing=()
for package in "$@"; do
  chroot "$root" dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
    || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  install() { chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2; }
  # A list from an older run may name versions the mirror has dropped: refresh it once.
  install || { chroot "$root" apt-get update -qq >&2 && install; }
fi
echo "$root"
