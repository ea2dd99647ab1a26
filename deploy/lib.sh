# shellcheck shell=bash
# Shared helpers for deploy/*.sh: paths, pidfiles, port checks, readiness waits, log tails.
# Sourced, never executed. Every service file (kafka.sh, neo4j.sh, redis.sh, opa.sh) defines
#   <svc>_port            configured port
#   <svc>_install         fetch/build; fast no-op when already done
#   <svc>_launch PORT     start in the background, write the pidfile (log: $(svc_log <svc>))
#   <svc>_ready PORT      0 when the service answers a real request
#   <svc>_owns PID PORT   0 when PID is the process deploy/ started for <svc>
# and the verbs below (svc_up, svc_down, ...) work on any of them.

set -euo pipefail

if [[ -z "${RISKGRAPH_DEPLOY_LIB_LOADED:-}" ]]; then
RISKGRAPH_DEPLOY_LIB_LOADED=1

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname "$DEPLOY_DIR")
STATE_DIR=${RISKGRAPH_STATE_DIR:-$DEPLOY_DIR/.state}
RUN_DIR=$STATE_DIR/run          # <svc>.pid, <svc>.port
LOG_DIR=$STATE_DIR/logs         # <svc>.log (previous run: <svc>.log.1)
BIN_DIR=$STATE_DIR/bin          # built binaries (opa)
START_TIMEOUT=${RISKGRAPH_START_TIMEOUT:-180}
STOP_TIMEOUT=${RISKGRAPH_STOP_TIMEOUT:-30}
ALL_SERVICES=(kafka neo4j redis opa)

# JIT mode for the two JVMs. Default: C1 only (-XX:TieredStopAtLevel=1), which halves start-up
# on a 2-core box (all four up in ~10 s instead of ~20 s) at the cost of peak throughput.
# Set RISKGRAPH_JVM_FAST_START=0 for benchmarks or long soak runs.
jvm_mode_opts() {
    if [[ "${RISKGRAPH_JVM_FAST_START:-1}" != 0 ]]; then printf '%s' '-XX:TieredStopAtLevel=1'; fi
}

# Python for the readiness probes: RISKGRAPH_PYTHON, else the project venv when present (it has
# the neo4j driver), else any python3 (probe.py needs only the standard library).
if [[ -n "${RISKGRAPH_PYTHON:-}" ]]; then
    PROBE_PY=$RISKGRAPH_PYTHON
elif [[ -x "$REPO_DIR/.venv/bin/python" ]]; then
    PROBE_PY=$REPO_DIR/.venv/bin/python
else
    PROBE_PY=$(command -v python3 || true)
fi

say()  { [[ "${RISKGRAPH_QUIET:-0}" == 1 ]] || printf '%s\n' "$*"; }
note() { printf '%s\n' "$*" >&2; }
die()  { printf 'deploy: error: %s\n' "$*" >&2; exit 1; }

need_cmd() {  # need_cmd CMD HINT
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH: $2"
}

svc_log()     { printf '%s/%s.log' "$LOG_DIR" "$1"; }
svc_pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
svc_portfile(){ printf '%s/%s.port' "$RUN_DIR" "$1"; }

ensure_dirs() { mkdir -p "$RUN_DIR" "$LOG_DIR" "$BIN_DIR"; }

# Serialise install/up/down across concurrent callers (two test sessions running `up` at once).
with_lock() {
    ensure_dirs
    if command -v flock >/dev/null 2>&1; then
        exec {RISKGRAPH_LOCK_FD}>"$STATE_DIR/.lock"
        flock -w 900 "$RISKGRAPH_LOCK_FD" || die "timed out waiting for $STATE_DIR/.lock"
    fi
}

# Long-lived children must not inherit the lock fd (they would hold the lock forever).
close_lock_fd() {
    if [[ -n "${RISKGRAPH_LOCK_FD:-}" ]]; then exec {RISKGRAPH_LOCK_FD}>&-; fi
}

# Start a new log for this run; keep the previous one as .log.1.
rotate_log() {
    local log; log=$(svc_log "$1")
    [[ -s "$log" ]] && mv -f "$log" "$log.1"
    : >"$log"
}

log_tail() {  # log_tail SVC [N]
    local log n=${2:-${RISKGRAPH_LOG_LINES:-40}}
    log=$(svc_log "$1")
    if [[ -s "$log" ]]; then
        printf -- '--- last %s lines of %s ---\n' "$n" "$log" >&2
        tail -n "$n" "$log" >&2
        printf -- '---\n' >&2
    else
        printf '(log %s is empty or missing)\n' "$log" >&2
    fi
}

# A process is alive when /proc has it and it is not a zombie.
pid_alive() {
    local pid=$1 state
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != Z && "$state" != X ]]
}

pid_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# Recorded port of a running service, else the configured one.
svc_current_port() {
    local pf; pf=$(svc_portfile "$1")
    if [[ -s "$pf" ]]; then cat "$pf"; else "$1"_port; fi
}

# Print the pid deploy/ started for SVC if it is still that process; clean up stale pidfiles.
svc_pid() {
    local svc=$1 pf pid port
    pf=$(svc_pidfile "$svc")
    [[ -s "$pf" ]] || return 0
    pid=$(tr -dc '0-9' <"$pf")
    port=$(svc_current_port "$svc")
    if pid_alive "$pid" && "$svc"_owns "$pid" "$port"; then
        printf '%s' "$pid"
    else
        rm -f "$pf" "$(svc_portfile "$svc")"
    fi
}

port_open() {  # port_open PORT [HOST]
    # shellcheck disable=SC2016  # $0/$1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$0"' "$1" "${2:-127.0.0.1}" 2>/dev/null
}

probe() { "$PROBE_PY" "$DEPLOY_DIR/probe.py" "$@"; }

# Start a command in its own session, detached from the caller's terminal and stdin.
# Writes the pidfile; stdout+stderr go to the service log.
spawn() {  # spawn SVC PORT CMD...
    local svc=$1 port=$2; shift 2
    local log; log=$(svc_log "$svc")
    (close_lock_fd; exec setsid "$@") </dev/null >>"$log" 2>&1 &
    local pid=$!
    printf '%s\n' "$pid" >"$(svc_pidfile "$svc")"
    printf '%s\n' "$port" >"$(svc_portfile "$svc")"
}

# Copy a pom's runtime dependencies into LIBDIR with Maven (jars cached in ~/.m2).
# Skipped when LIBDIR was filled from the same pom (sha256 stamp).
maven_fetch() {  # maven_fetch SVC POM LIBDIR
    local svc=$1 pom=$2 lib=$3 want have=""
    want=$(sha256sum "$pom" | cut -d' ' -f1)
    [[ -f "$lib/.pom.sha256" ]] && have=$(cat "$lib/.pom.sha256")
    [[ "$want" == "$have" ]] && return 0
    need_cmd java "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
    need_cmd mvn "install Maven (Debian: apt-get install -y maven)"
    note "$svc: fetching jars from Maven Central ($(basename "$(dirname "$pom")")/pom.xml) ..."
    local tmp=$lib.tmp mlog
    mlog=$LOG_DIR/$svc-install.log
    rm -rf "$tmp"
    mkdir -p "$(dirname "$lib")"
    if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" -DincludeScope=runtime >"$mlog" 2>&1 </dev/null; then
        note "deploy: error: $svc: Maven could not fetch the dependencies of $pom"
        tail -n 30 "$mlog" >&2
        rm -rf "$tmp"
        return 1
    fi
    printf '%s\n' "$want" >"$tmp/.pom.sha256"
    rm -rf "$lib"
    mv "$tmp" "$lib"
}

# ---------------------------------------------------------------- verbs

svc_install() { ensure_dirs; "$1"_install; }

# Launch SVC unless it already runs. Echoes nothing; sets SVC_LAUNCHED_<svc>=1 when started.
svc_launch() {
    local svc=$1 pid port
    pid=$(svc_pid "$svc")
    if [[ -n "$pid" ]]; then
        say "$svc: already running (pid $pid, port $(svc_current_port "$svc"))"
        return 0
    fi
    port=$("$svc"_port)
    if port_open "$port"; then
        note "deploy: error: $svc: port $port is already in use by a process deploy/ did not start; stop it or set RISKGRAPH_${svc^^}_PORT"
        return 1
    fi
    rotate_log "$svc"
    "$svc"_launch "$port" || return 1
    printf -v "SVC_LAUNCHED_$svc" '%s' 1
    printf -v "SVC_T0_$svc" '%s' "$SECONDS"
}

# One readiness poll of a service launched by this run: 0 ready, 1 failed (reported), 2 pending.
svc_poll() {
    local svc=$1
    local t0v="SVC_T0_$svc"
    local port pidfile pid
    port=$(svc_current_port "$svc")
    pidfile=$(svc_pidfile "$svc")
    pid=$(tr -dc '0-9' <"$pidfile" 2>/dev/null || true)
    if [[ -n "$pid" ]] && pid_alive "$pid" && "$svc"_ready "$port" >/dev/null 2>&1; then
        say "$svc: ready on 127.0.0.1:$port (pid $pid, $((SECONDS - ${!t0v}))s)"
        return 0
    fi
    if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
        note "deploy: error: $svc exited during startup (pid $pid)"
        rm -f "$pidfile" "$(svc_portfile "$svc")"
        log_tail "$svc"
        return 1
    fi
    if ((SECONDS - ${!t0v} >= START_TIMEOUT)); then
        note "deploy: error: $svc not ready on port $port after ${START_TIMEOUT}s (RISKGRAPH_START_TIMEOUT); stopping it"
        log_tail "$svc"
        svc_stop "$svc" >/dev/null || true
        return 1
    fi
    return 2
}

# Wait for every service this run launched, polling them side by side; 1 if any failed.
svc_wait_all() {
    local pending=() s rc=0 st
    for s in "$@"; do
        local launched="SVC_LAUNCHED_$s"
        [[ "${!launched:-}" == 1 ]] && pending+=("$s")
    done
    while ((${#pending[@]})); do
        local still=()
        for s in "${pending[@]}"; do
            st=0
            svc_poll "$s" || st=$?
            case $st in
                0) ;;
                2) still+=("$s") ;;
                *) rc=1 ;;
            esac
        done
        pending=("${still[@]}")
        ((${#pending[@]})) && sleep 0.5
    done
    return "$rc"
}

# SIGTERM the recorded pid, SIGKILL after STOP_TIMEOUT; never touches other processes.
svc_stop() {
    local svc=$1 pid i
    pid=$(svc_pid "$svc")
    if [[ -z "$pid" ]]; then
        rm -f "$(svc_pidfile "$svc")" "$(svc_portfile "$svc")"
        say "$svc: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
        pid_alive "$pid" || break
        sleep 0.2
    done
    if pid_alive "$pid"; then
        note "$svc: pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do pid_alive "$pid" || break; sleep 0.1; done
    fi
    rm -f "$(svc_pidfile "$svc")" "$(svc_portfile "$svc")"
    say "$svc: stopped (pid $pid)"
}

status_header() { printf '%-8s %-8s %-6s %-5s %s\n' SERVICE PID PORT READY NOTE; }

# One status row; returns 0 when the service deploy/ started is running and ready.
svc_status_row() {
    local svc=$1 pid port ready=no note=""
    pid=$(svc_pid "$svc")
    port=$(svc_current_port "$svc")
    if "$svc"_ready "$port" >/dev/null 2>&1; then ready=yes; fi
    if [[ -z "$pid" ]]; then
        note=stopped
        [[ $ready == yes ]] && note="answering, but not started by deploy/"
        port_open "$port" && [[ $ready == no ]] && note="port in use by another process"
    fi
    printf '%-8s %-8s %-6s %-5s %s\n' "$svc" "${pid:--}" "$port" "$ready" "$note"
    [[ -n "$pid" && $ready == yes ]]
}

svc_logs() {  # svc_logs SVC
    local log; log=$(svc_log "$1")
    printf '==> %s <==\n' "$log"
    if [[ -f "$log" ]]; then tail -n "${RISKGRAPH_LOG_LINES:-40}" "$log"; else echo "(no log yet)"; fi
}

# Run VERB over the given services (default: all). Used by services.sh and each <svc>.sh.
dispatch() {
    local verb=${1:-} follow=0
    [[ $# -gt 0 ]] && shift
    local svcs=() s
    for s in "$@"; do
        case "$s" in
            -f|--follow) follow=1 ;;
            kafka|neo4j|redis|opa) svcs+=("$s") ;;
            *) die "unknown service '$s' (expected: ${ALL_SERVICES[*]})" ;;
        esac
    done
    ((${#svcs[@]})) || svcs=("${ALL_SERVICES[@]}")
    local rc=0
    case "$verb" in
        install)
            with_lock
            for s in "${svcs[@]}"; do svc_install "$s"; done ;;
        up|start)
            with_lock
            for s in "${svcs[@]}"; do svc_install "$s"; done
            # Launch everything first, then wait: the JVMs start in parallel.
            for s in "${svcs[@]}"; do svc_launch "$s" || rc=1; done
            svc_wait_all "${svcs[@]}" || rc=1 ;;
        down|stop)
            with_lock
            for s in "${svcs[@]}"; do svc_stop "$s"; done ;;
        restart)
            with_lock
            for s in "${svcs[@]}"; do svc_stop "$s"; done
            for s in "${svcs[@]}"; do svc_install "$s"; done
            for s in "${svcs[@]}"; do svc_launch "$s" || rc=1; done
            svc_wait_all "${svcs[@]}" || rc=1 ;;
        status)
            ensure_dirs
            status_header
            for s in "${svcs[@]}"; do svc_status_row "$s" || rc=3; done ;;
        smoke|check)
            [[ -n "$PROBE_PY" ]] || die "python3 not found"
            "$PROBE_PY" "$DEPLOY_DIR/smoke.py" "${svcs[@]}" || rc=$? ;;
        logs)
            if ((follow)); then
                local files=()
                for s in "${svcs[@]}"; do files+=("$(svc_log "$s")"); done
                exec tail -n "${RISKGRAPH_LOG_LINES:-40}" -F "${files[@]}"
            fi
            for s in "${svcs[@]}"; do svc_logs "$s"; done ;;
        ""|-h|--help|help)
            usage; return 0 ;;
        *)
            note "deploy: error: unknown command '$verb'"
            usage >&2; return 2 ;;
    esac
    return "$rc"
}

usage() {
    cat <<EOF
usage: ${0##*/} {install|up|down|restart|status|logs [-f]|smoke} [kafka|neo4j|redis|opa ...]
  install  fetch/build only (Maven jars, OPA binary, redis-server package)
  up       install if needed, start, wait until ready (idempotent)
  down     SIGTERM the pids deploy/ started (SIGKILL after ${STOP_TIMEOUT}s), remove pidfiles
  status   table of service, pid, port, ready; exit 0 only when all are up and ready
  logs     tail of each log (-f to follow); logs live in $LOG_DIR
  smoke    end-to-end check with the venv's clients (Kafka produce/consume, Neo4j MERGE/read,
           Redis SET/GET, OPA policy query); see deploy/smoke.py
State: $STATE_DIR   (delete it while stopped to reset everything)
EOF
}

fi
