#!/usr/bin/env bash
# Connection settings for the services started by deploy/services.sh (same port env vars).
#   eval "$(deploy/env.sh)"     # or:  . deploy/env.sh
# When sourced it exports into the current shell and leaves its shell options alone.
_rg_lines() {
    printf 'export RISKGRAPH_KAFKA_BOOTSTRAP=%s\n' "127.0.0.1:${RISKGRAPH_KAFKA_PORT:-9092}"
    printf 'export RISKGRAPH_NEO4J_URI=%s\n' "bolt://127.0.0.1:${RISKGRAPH_NEO4J_PORT:-7687}"
    printf 'export RISKGRAPH_REDIS_URL=%s\n' "redis://127.0.0.1:${RISKGRAPH_REDIS_PORT:-6379}/0"
    printf 'export RISKGRAPH_OPA_URL=%s\n' "http://127.0.0.1:${RISKGRAPH_OPA_PORT:-8181}"
}
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    _rg_lines
else
    eval "$(_rg_lines)"
    unset -f _rg_lines
fi
