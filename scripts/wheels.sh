#!/usr/bin/env bash
# `make wheels`: blockon's release files in dist/, then a table of them.
#   - the sdist (maturin sdist);
#   - the Linux x86_64 wheel, built here with this machine's toolchain, linked by zig against
#     glibc 2.17 (manylinux2014);
#   - every target in WHEEL_TARGETS (default below), cross-built in the Debian sid chroot by
#     scripts/cross.sh: its rustc builds the standard library for the target.
# Then `auditwheel show` on each Linux wheel (it must say manylinux2014 / manylinux_2_17), and
# the table: file, tags, size, verdict. Testing the wheels is `make wheel-test` and
# `make sdist-test`. Needs root for the chroot, as on the project's machines.
#   scripts/wheels.sh VENV_PYTHON
set -uo pipefail
cd "$(dirname "$0")/.."
py=${1:?the virtualenv python that has maturin}
bin=$(dirname "$py")
targets=${WHEEL_TARGETS-aarch64-unknown-linux-gnu x86_64-pc-windows-gnu x86_64-apple-darwin aarch64-apple-darwin}
status=0
rm -rf dist && mkdir -p dist
"$py" -m pip install -q "ziglang>=0.13" "auditwheel>=6"
"$bin/maturin" sdist -o dist || status=1
# maturin finds zig through the python on PATH.
PATH="$bin:$PATH" "$bin/maturin" build --release --locked --zig --compatibility manylinux2014 \
  -o dist || status=1
if [ -n "$targets" ]; then
  # shellcheck disable=SC2086  # a list of targets
  scripts/cross.sh wheel $targets || status=1
fi
echo
echo "| file | tags | size | auditwheel |"
echo "|---|---|---|---|"
for file in dist/*; do
  name=$(basename "$file")
  size=$(du -k "$file" | cut -f1)
  if [[ $name == *.whl ]]; then
    tags=$("$py" -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
print(",".join(l[5:] for l in z.read(meta).decode().splitlines() if l.startswith("Tag: ")))' "$file")
  else
    tags="source"
  fi
  verdict="-"
  if [[ $name == *linux* ]]; then
    # auditwheel wraps its lines: read the report as one.
    report=$("$bin/auditwheel" show "$file" 2>&1 | tr -s '\n ' '  ')
    if grep -q 'consistent with the following platform tag: "manylinux_2_17_' <<< "$report"; then
      verdict="consistent with manylinux_2_17 (manylinux2014)"
    else
      verdict="NOT manylinux2014: $(cut -c1-300 <<< "$report")"
      status=1
    fi
  fi
  echo "| $name | $tags | ${size} KiB | $verdict |"
done
exit "$status"
