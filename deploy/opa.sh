#!/usr/bin/env bash
# Open Policy Agent server on 127.0.0.1, built from source with `go install` (pinned version),
# serving the Rego policies in policies/ with decision logs on its console (= its log file).
#   deploy/opa.sh {install|up|down|restart|status|logs}
# Env: RISKGRAPH_OPA_PORT (8181), RISKGRAPH_OPA_POLICY_DIR (<repo>/policies),
#      RISKGRAPH_OPA_LOG_LEVEL (info), RISKGRAPH_OPA_ARGS (extra `opa run` arguments, e.g. --watch).
# Binary: .state/bin/opa (other tooling, e.g. `opa test`, uses the same path); log .state/logs/opa.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Newest v1.x when pinned (`go list -m github.com/open-policy-agent/opa@latest`). Keep the
# openpolicyagent/opa image tag in docker-compose.yml in step.
OPA_VERSION=v1.22.0
OPA_MODULE=github.com/open-policy-agent/opa
OPA_BIN=$BIN_DIR/opa

opa_port() { printf '%s' "${RISKGRAPH_OPA_PORT:-8181}"; }
opa_policy_dir() { printf '%s' "${RISKGRAPH_OPA_POLICY_DIR:-$REPO_DIR/policies}"; }

opa_built_version() {  # module version recorded in the binary by `go install`, if any
    [[ -x "$OPA_BIN" ]] || return 0
    if command -v go >/dev/null 2>&1; then
        go version -m "$OPA_BIN" 2>/dev/null | awk -v m="$OPA_MODULE" '$1 == "mod" && $2 == m { print $3 }'
    else
        "$OPA_BIN" version 2>/dev/null | awk '$1 == "Version:" { print "v" $2 }'
    fi
}

opa_install() {
    [[ "$(opa_built_version)" == "$OPA_VERSION" ]] && return 0
    need_cmd go "install Go 1.23+ to build OPA (https://go.dev/dl/), or put an opa $OPA_VERSION binary at $OPA_BIN"
    note "opa: building $OPA_MODULE@$OPA_VERSION into $BIN_DIR (a few minutes the first time) ..."
    local glog=$LOG_DIR/opa-install.log
    mkdir -p "$BIN_DIR"
    if ! CGO_ENABLED=0 GOBIN="$BIN_DIR" go install "$OPA_MODULE@$OPA_VERSION" >"$glog" 2>&1 </dev/null; then
        tail -n 30 "$glog" >&2
        die "opa: go install $OPA_MODULE@$OPA_VERSION failed (log: $glog)"
    fi
    [[ "$(opa_built_version)" == "$OPA_VERSION" ]] || die "opa: $OPA_BIN is not $OPA_VERSION after go install"
}

opa_launch() {
    local port=$1 dir
    dir=$(opa_policy_dir)
    if [[ ! -d "$dir" ]]; then
        note "deploy: error: opa: policy directory $dir does not exist (RISKGRAPH_OPA_POLICY_DIR)"
        return 1
    fi
    # shellcheck disable=SC2086  # extra args are deliberately word-split
    spawn opa "$port" "$OPA_BIN" run --server --addr "127.0.0.1:$port" --skip-version-check \
        --log-level "${RISKGRAPH_OPA_LOG_LEVEL:-info}" \
        --set decision_logs.console=true \
        ${RISKGRAPH_OPA_ARGS:-} "$dir"
}

opa_ready() { probe http "http://127.0.0.1:$1/health"; }

opa_owns() {
    local cmd; cmd=$(pid_cmdline "$1")
    [[ "$cmd" == "$OPA_BIN run --server --addr 127.0.0.1:$2 "* ]]
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    dispatch "${1:-}" opa "${@:2}"
fi
