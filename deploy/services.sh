#!/usr/bin/env bash
# Fetch, start, check and stop riskgraph's real backing services on loopback, without Docker.
#   deploy/services.sh {install|up|down|restart|status|logs [-f]} [kafka|neo4j|redis|opa ...]
# No service name = all four. See deploy/README.md for ports, env vars, logs and resetting state.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
for s in "${ALL_SERVICES[@]}"; do
    # shellcheck disable=SC1090
    . "$here/$s.sh"
done
dispatch "$@"
