#!/usr/bin/env bash
# `make matrix`: the whole test suite on every CPython blockon claims, built once from
# Debian's source packages into a cache outside the repository (scripts/matrix-python.sh),
# plus the machine's own python3. Prints a version-by-result table and writes it, dated,
# to docs/compatibility.md.
#   scripts/matrix.sh [VERSION[t] ...]      default: 3.11 (this machine's) 3.13 3.14 3.15 3.13t 3.14t
# Test dependencies a version cannot install (no wheel, no build) are left out; the tests
# that need them skip, and the table says which.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${BLOCKON_MATRIX_CACHE:-$HOME/.cache/blockon-matrix}
mkdir -p "$cache"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(3.11 3.13 3.14 3.15 3.13t 3.14t)
deps=(pytest pytest-asyncio pytest-timeout hypothesis uvloop aiohttp aiosqlite httpx
      ipykernel nbclient nbformat jupyter-client starlette uvicorn greenlet mypy)
rows=()
for target in "${targets[@]}"; do
  version=${target%t}; flavour=${target#"$version"}
  echo "== CPython $target" >&2
  if [ "$target" = "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ]; then
    py=$(command -v python3)
  else
    log=$cache/python-$target.log
    if ! py=$(scripts/matrix-python.sh "$version" "$flavour" 2> "$log"); then
      if grep -q "404 *Not Found" "$log" && [ -z "$flavour" ]; then
        # No source to build: Debian's own binary build, in a sid chroot (scripts/matrix-chroot.sh).
        wheel=$cache/wheels-abi3
        if [ -z "${abi3_built:-}" ]; then  # one abi3 wheel serves every such version
          rm -rf "$wheel"
          "$root/.venv/bin/maturin" build --release -q -o "$wheel" >&2
          abi3_built=1
        fi
        if out=$(MATRIX_DEPS="${deps[*]}" scripts/matrix-chroot.sh "$version" "$wheel"/*.whl); then
          rows+=("| $target | ${out%%|*} | Debian's binary python$version in a sid chroot; ${out#*|} |"); continue
        fi
      fi
      cat "$log" >&2
      if grep -q "404 *Not Found" "$log"; then
        why="not tested: no python$version source package could be downloaded from Debian's mirror (404)"
      else
        why="not tested: building CPython failed (see $log)"
      fi
      rows+=("| $target | $why | |"); continue
    fi
  fi
  venv=$cache/venv-$target
  [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q -U pip maturin >&2
  rm -rf "$cache/wheels-$target"
  if ! "$venv/bin/maturin" build --release -q -i "$venv/bin/python" -o "$cache/wheels-$target" \
      > "$cache/build-blockon-$target.log" 2>&1; then
    cat "$cache/build-blockon-$target.log" >&2
    why=$(grep -m1 -oE "PyO3 does not support [^,]*" "$cache/build-blockon-$target.log" \
      || grep -m1 "error:" "$cache/build-blockon-$target.log")
    rows+=("| $target | not tested: building blockon failed: ${why:-see $cache/build-blockon-$target.log} | |"); continue
  fi
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$cache/wheels-$target"/*.whl >&2
  missing=()
  for dep in "${deps[@]}"; do
    "$venv/bin/python" -m pip install -q "$dep" >/dev/null 2>&1 || missing+=("$dep")
  done
  gil=$("$venv/bin/python" -c 'import sys, blockon; print(getattr(sys, "_is_gil_enabled", lambda: True)())')
  # Run from a copy of the tests, so `import blockon` is the installed wheel, not ./python.
  work=$(mktemp -d)
  cp -r tests pyproject.toml docs examples "$work"/
  summary=$(cd "$work" && "$venv/bin/python" -m pytest tests -q -p no:randomly 2>&1 \
    | grep -E "^=* ?[0-9]+ (passed|failed|error)" | tail -n 1 | tr -d '=' | sed 's/^ *//')
  summary=${summary:-"pytest did not finish"}
  rm -rf "$work"
  note=${missing[*]:-}
  rows+=("| $target | $summary | GIL after import: $gil${note:+; not installable: $note} |")
done
table="| CPython | result | notes |
|---|---|---|
$(printf '%s\n' "${rows[@]}")"
echo "$table"
{
  echo "# Compatibility"
  echo
  echo "The whole test suite on each CPython, from \`make matrix\` ($(date -u +%Y-%m-%d), $(uname -m))."
  echo "Interpreters are built from Debian's source packages (upstream sources) by"
  echo "scripts/matrix-python.sh; blockon is built as a wheel for each and installed from it."
  echo
  echo "$table"
} > docs/compatibility.md
