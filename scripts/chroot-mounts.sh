# Sourced by the scripts that run programs in a chroot made by scripts/sid-chroot.sh.
#   bind_mounts ROOT DIR ...   bind-mounts each host /DIR at ROOT/DIR, unless it is mounted
#                              there already, and unmounts at exit only those it mounted:
#                              scripts sharing one chroot (make matrix, make cross-check) may
#                              run at once, and one must not pull /proc from under another.
bind_mounts() {
  local root=$1 dir
  shift
  bind_mounted=()
  for dir in "$@"; do
    if ! mountpoint -q "$root/$dir"; then
      mount --bind "/$dir" "$root/$dir" && bind_mounted=("$root/$dir" "${bind_mounted[@]}")
    fi
  done
  trap 'for dir in "${bind_mounted[@]}"; do umount "$dir" 2>/dev/null || true; done' EXIT
}
