# Shared by the tpu/ launchers (sourced, not run).
# quote_args ARG...: the arguments as one string that bash on the far side splits back into
# exactly these arguments (printf %q), so '(4,4,1)' or a value with spaces survives ssh.
quote_args() {
  local out="" a
  for a in "$@"; do out+=" $(printf '%q' "$a")"; done
  printf '%s' "${out# }"
}
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
