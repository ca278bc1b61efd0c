# shellcheck shell=bash
# Shared by the launch/*.sh scripts (sourced, not run). The caller sets PROG.

die() { printf '%s: %s\n' "$PROG" "$*" >&2; exit 2; }

# Print the arguments as one line a POSIX shell reads back as the same words.
quote() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$a")
    else
      out+=("'${a//\'/\'\\\'\'}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}
