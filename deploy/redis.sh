#!/usr/bin/env bash
# Redis (Debian's redis-server, 7.0 on bookworm) on 127.0.0.1, no persistence (--save '').
#   deploy/redis.sh {install|up|down|restart|status|logs}
# Env: RISKGRAPH_REDIS_PORT (6379), RISKGRAPH_REDIS_ARGS (extra redis-server arguments).
# Installs the package with apt-get when redis-server is missing (needs root or passwordless sudo).
# State: .state/redis (working dir); pidfile .state/run/redis.pid; log .state/logs/redis.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_STATE=$STATE_DIR/redis

redis_port() { printf '%s' "${RISKGRAPH_REDIS_PORT:-6379}"; }

redis_install() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        if ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
            die "redis-server is missing and apt-get needs root: run 'sudo apt-get install -y redis-server'"
        fi
        sudo=(sudo -n)
    fi
    need_cmd apt-get "install redis-server (7.x) with your package manager"
    note "redis: installing redis-server with apt-get ..."
    local alog=$LOG_DIR/redis-install.log
    mkdir -p "$REDIS_STATE"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q --no-install-recommends redis-server >"$alog" 2>&1 </dev/null; then
        "${sudo[@]}" apt-get update -q >>"$alog" 2>&1 </dev/null || true
        "${sudo[@]}" apt-get install -y -q --no-install-recommends redis-server >>"$alog" 2>&1 </dev/null \
            || { tail -n 20 "$alog" >&2; die "redis: apt-get install redis-server failed (log: $alog)"; }
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis: redis-server still not on PATH after apt-get"
}

redis_launch() {
    local port=$1 pf
    pf=$(svc_pidfile redis)
    mkdir -p "$REDIS_STATE"
    rm -f "$pf"
    # redis daemonizes itself and writes the pidfile; the lock fd must not leak into the daemon.
    # shellcheck disable=SC2086,SC2094  # extra args word-split; redis writes its own logfile
    if ! (close_lock_fd; exec redis-server --port "$port" --bind 127.0.0.1 --protected-mode yes \
            --save '' --appendonly no --dir "$REDIS_STATE" \
            --daemonize yes --pidfile "$pf" --logfile "$(svc_log redis)" \
            ${RISKGRAPH_REDIS_ARGS:-}) </dev/null >>"$(svc_log redis)" 2>&1; then
        note "deploy: error: redis-server failed to start"
        log_tail redis
        return 1
    fi
    printf '%s\n' "$port" >"$(svc_portfile redis)"
    # The daemon writes its pidfile a moment after the parent returns.
    local i
    for ((i = 0; i < 50; i++)); do [[ -s "$pf" ]] && return 0; sleep 0.1; done
    note "deploy: error: redis-server wrote no pidfile ($pf)"
    log_tail redis
    return 1
}

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]; }

# redis rewrites its process title to "/usr/bin/redis-server 127.0.0.1:PORT".
redis_owns() {
    local cmd; cmd=$(pid_cmdline "$1")
    [[ "$cmd" == *redis-server* && "$cmd" == *":$2"* ]]
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    dispatch "${1:-}" redis "${@:2}"
fi
