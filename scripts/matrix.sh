#!/usr/bin/env bash
# `make matrix`: the whole test suite on every CPython blockon claims, built once from
# Debian's source packages into a cache outside the repository (scripts/matrix-python.sh),
# or, where the mirror has no source, Debian's binary build in a sid chroot
# (scripts/matrix-chroot.sh); plus the machine's own python3. Prints a version-by-result
# table and writes it, dated, to docs/compatibility.md.
#   scripts/matrix.sh [VERSION[t] ...]          default: 3.11 (this machine's) 3.13 3.14 3.15 3.13t 3.14t
#   scripts/matrix.sh --bench [VERSION[t] ...]  `make bench-matrix`: benches/run_all.py on each
#                                               instead (default: 3.11 3.14), then the
#                                               per-version table of docs/benchmarks.md
# Test dependencies a version cannot install (no wheel, no build) are left out; the tests
# that need them skip, and the table says which.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${BLOCKON_MATRIX_CACHE:-$HOME/.cache/blockon-matrix}
mkdir -p "$cache"
mode=test
[ "${1:-}" = --bench ] && { mode=bench; shift; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  if [ $mode = bench ]; then targets=(3.11 3.14); else targets=(3.11 3.13 3.14 3.15 3.13t 3.14t); fi
fi
if [ $mode = bench ]; then
  deps=(uvloop greenback asyncio-thread-runner asgiref anyio asyncer synchronicity nest-asyncio2)
else
  deps=(pytest pytest-asyncio pytest-timeout hypothesis uvloop aiohttp aiosqlite httpx
        ipykernel nbclient nbformat jupyter-client starlette uvicorn greenlet mypy pyyaml
        asyncpg redis)
fi
host=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The benchmarks report the commit they measured; their copy outside the checkout has no git.
BLOCKON_GIT_REV=$(git rev-parse --short HEAD 2>/dev/null)$(git status --porcelain -- src python \
  Cargo.toml pyproject.toml 2>/dev/null | grep -q . && echo " + uncommitted changes to src/python")
export BLOCKON_GIT_REV
rows=()
row_files=()
for target in "${targets[@]}"; do
  version=${target%t}; flavour=${target#"$version"}
  echo "== CPython $target ($mode)" >&2
  if [ "$target" = "$host" ]; then
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
        if out=$(MATRIX_MODE=$mode MATRIX_DEPS="${deps[*]}" scripts/matrix-chroot.sh "$version" "$wheel"/*.whl); then
          if [ $mode = bench ]; then
            row_files+=("$cache/bench-$target.json")
          else
            rows+=("| $target | ${out%%|*} | Debian's binary python$version (${out##*|}) in a sid chroot; $(cut -d'|' -f2 <<< "$out") |")
          fi
          continue
        fi
      fi
      cat "$log" >&2
      if grep -q "404 *Not Found" "$log"; then
        why="not tested: no python$version source package could be downloaded from Debian's mirror (404)"
        [ -n "$flavour" ] && why="$why, and Debian builds no free-threaded python$version binary package"
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
  # Run from a copy, so `import blockon` is the installed wheel, not ./python.
  work=$(mktemp -d)
  cp -r tests benches scripts pyproject.toml docs examples README.md CHANGELOG.md .github "$work"/
  out=$(cd "$work" && MATRIX_MODE=$mode MATRIX_DEPS="${deps[*]}" \
    bash scripts/matrix-run.sh "$venv/bin/python" "$cache/wheels-$target"/*.whl)
  if [ $mode = bench ]; then
    cp "$work/row.json" "$cache/bench-$target.json" && row_files+=("$cache/bench-$target.json")
  else
    cp "$work/pytest.log" "$cache/pytest-$target.log"
    rows+=("| $target | ${out%%|*} | ${out##*|}; $(cut -d'|' -f2 <<< "$out") |")
  fi
  rm -rf "$work"
done
if [ $mode = bench ]; then
  [ ${#row_files[@]} -gt 0 ] && "$root/.venv/bin/python" benches/per_version.py "${row_files[@]}"
  exit 0
fi
table="| CPython | result | notes |
|---|---|---|
$(printf '%s\n' "${rows[@]}")"
echo "$table"
section="The whole test suite on each CPython, from \`make matrix\` ($(date -u +%Y-%m-%d), $(uname -m)).
Interpreters are built from Debian's source packages (upstream sources) by
scripts/matrix-python.sh; blockon is built as a wheel for each and installed from it.
Where a version's source package cannot be downloaded, scripts/matrix-chroot.sh runs the
suite on Debian's own binary build of it inside a Debian sid chroot made by debootstrap,
with the abi3 wheel built on this machine. \"GIL after import\" is
\`sys._is_gil_enabled()\` once \`import blockon\` has run: False on a free-threaded build
means the engine kept the GIL off (the extension declares \`gil_used = false\`).

$table

Why a row is not tested, where one is not: see \"Free-threaded builds\" in
docs/how-it-works.md."
# Only the section between the markers is this script's: the rest of the page is written by
# hand (platforms and wheels).
python3 - "$section" <<'PY'
import pathlib
import sys

page = pathlib.Path("docs/compatibility.md")
begin, end = "<!-- make matrix writes from here -->", "<!-- to here -->"
head, rest = page.read_text(encoding="utf-8").split(begin)
tail = rest.split(end)[1]
page.write_text(f"{head}{begin}\n{sys.argv[1]}\n{end}{tail}", encoding="utf-8")
PY
