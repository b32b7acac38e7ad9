#!/usr/bin/env bash
# Builds one CPython from Debian's source packages, once, into a cache outside the repository.
#   scripts/matrix-python.sh VERSION [t]     e.g. 3.13, or 3.14 t for the free-threaded build
# Prints the path of the built interpreter. Needs root (apt-get), as on the project's machines.
set -euo pipefail
version=$1
flavour=${2:-}
cache=${BLOCKON_MATRIX_CACHE:-$HOME/.cache/blockon-matrix}
prefix=$cache/python$version$flavour
exe=$prefix/bin/python$version$flavour
if [ -x "$exe" ]; then echo "$exe"; exit 0; fi
mkdir -p "$cache/src"
# Debian's newer suites carry the newer CPythons as source packages.
list=/etc/apt/sources.list.d/blockon-matrix-src.sources
if [ ! -f "$list" ]; then
  cat > "$list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie forky sid experimental
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq >&2
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential dpkg-dev libssl-dev \
  zlib1g-dev libbz2-dev libreadline-dev libsqlite3-dev libffi-dev liblzma-dev uuid-dev \
  libgdbm-dev libncurses-dev tk-dev libexpat1-dev >&2
cd "$cache/src"
if ! ls python"$version"_*.orig.tar.xz >/dev/null 2>&1; then
  # Newest first; a version the index lists may be gone from the mirror already.
  for v in $(apt-cache showsrc "python$version" | awk '/^Version:/ {print $2}' | sort -rV); do
    apt-get source -qq --download-only "python$version=$v" >&2 && break
  done
fi
tarball=$(ls python"$version"_*.orig.tar.xz | sort -rV | head -n 1)
upstream=${tarball#python"$version"_}
srcdir=Python-${upstream%.orig.tar.xz}
[ -d "$srcdir" ] || tar -xf "$tarball"
build=$cache/build-$version$flavour
rm -rf "$build" && mkdir -p "$build" && cd "$build"
extra=()
[ "$flavour" = t ] && extra+=(--disable-gil)
"$cache/src/$srcdir/configure" --prefix="$prefix" --with-ensurepip=install "${extra[@]}" >&2
make -j"$(nproc)" >&2
make altinstall >&2
echo "$exe"
