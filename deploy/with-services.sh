#!/usr/bin/env bash
# Run a command with some real services up, and stop the ones this call started afterwards
# (services already running before it are left running).
#   deploy/with-services.sh SERVICE... -- COMMAND [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
services=()
while [[ $# -gt 0 && "$1" != "--" ]]; do services+=("$1"); shift; done
[[ "${1:-}" == "--" ]] || { echo "usage: $0 SERVICE... -- COMMAND" >&2; exit 2; }
shift
started=()
for s in "${services[@]}"; do
    if ! "$here/services.sh" status "$s" >/dev/null 2>&1; then started+=("$s"); fi
done
stop() { [[ ${#started[@]} -eq 0 ]] || "$here/services.sh" down "${started[@]}" >/dev/null || true; }
trap stop EXIT
"$here/services.sh" up "${services[@]}"
# shellcheck disable=SC1091
. "$here/env.sh" >/dev/null
"$@"
