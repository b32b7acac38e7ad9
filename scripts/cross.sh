#!/usr/bin/env bash
# Builds blockon for other systems inside the Debian sid chroot (scripts/sid-chroot.sh). This
# machine's Rust toolchain has the standard library for Linux x86_64 only and can download no
# other; sid's rustc builds it for any target from Debian's rust-src (-Zbuild-std, which a
# stable compiler allows with RUSTC_BOOTSTRAP=1).
#   scripts/cross.sh check TARGET ...   `make cross-check`: cargo check of the crate for each
#                                       target; a warning in the crate fails it, as clippy's
#                                       -D warnings does on Linux
#   scripts/cross.sh wheel TARGET ...   `make wheels`: a release wheel for each target, into
#                                       dist/ (maturin; zig links Linux and macOS, mingw-w64
#                                       links Windows)
# The chroot sees a copy of the checkout's files (committed or not, but not ignored). Its
# cargo registry and target directory stay in the chroot, so a second run rebuilds only what
# changed. Needs root (debootstrap, chroot, bind mounts), as on the project's machines.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?check or wheel}
shift
[ $# -gt 0 ] || { echo "usage: scripts/cross.sh check|wheel TARGET ..." >&2; exit 2; }
packages=(rustc cargo rust-src)
if [ "$mode" = wheel ]; then packages+=(python3-venv); fi
# Windows links through mingw-w64's gcc, and even checking its std needs mingw-w64's dlltool.
if [[ " $* " == *-windows-gnu\ * ]]; then packages+=(gcc-mingw-w64-x86-64); fi
root=$(scripts/sid-chroot.sh "${packages[@]}")
work=/opt/blockon-cross
# One run at a time in the shared chroot: checkouts (a developer's, CI's clone) share its
# copy of the source, registry and target directory.
mkdir -p "$root$work"
exec 9> "$root$work.lock"
flock 9
rm -rf "$root$work/src" "$root$work/dist"
mkdir -p "$root$work/src" "$root$work/dist"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
  | xargs -0 cp --parents -t "$root$work/src"
. scripts/chroot-mounts.sh
bind_mounts "$root" proc dev
inside() {
  chroot "$root" env -C "$work/src" HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$work/target" "$@"
}
# The unwinding runtime goes with std: the release profile keeps panic = "unwind".
build_std=-Zbuild-std=std,panic_unwind
status=0
if [ "$mode" = check ]; then
  for target in "$@"; do
    echo "== cargo check --target $target" >&2
    log=$(mktemp)
    if inside cargo check --locked --lib --target "$target" "$build_std" \
        --message-format short 2>&1 | tee "$log" >&2 \
        && ! grep -q "^warning: \`blockon\` (lib) generated" "$log"; then
      echo "cross-check $target: ok"
    else
      echo "cross-check $target: FAILED" && status=1
    fi
    rm -f "$log"
  done
  exit "$status"
fi
[ "$mode" = wheel ] || { echo "unknown mode: $mode" >&2; exit 2; }
venv=$work/venv
# The build tools, pinned to the ranges the project's own virtualenv takes (Makefile).
[ -x "$root$venv/bin/maturin" ] || inside python3 -m venv "$venv"
inside "$venv/bin/python" -m pip install -q -U pip "maturin>=1.7,<2" "ziglang>=0.13" >&2
mkdir -p dist
for target in "$@"; do
  echo "== maturin build --target $target" >&2
  how=(--zig)
  case $target in
    *-linux-*) how+=(--compatibility manylinux2014) ;;
    *-windows-gnu) how=() ;;  # mingw-w64's gcc: the target's default linker
  esac
  if inside env PATH="$venv/bin:/usr/bin:/bin" maturin build --release --locked \
      --target "$target" "${how[@]}" "$build_std" -o "$work/dist" >&2; then
    cp "$root$work/dist"/*.whl dist/ && rm -f "$root$work/dist"/*.whl
    echo "wheel $target: ok"
  else
    echo "wheel $target: FAILED" && status=1
  fi
done
exit "$status"
