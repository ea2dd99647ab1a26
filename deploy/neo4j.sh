#!/usr/bin/env bash
# Neo4j 5.26 LTS Community, embedded in a small launcher (deploy/neo4j/Launcher.java), Bolt on
# 127.0.0.1. Jars from Maven Central; no Neo4j tarball. AUTH IS OFF (loopback tests only).
#   deploy/neo4j.sh {install|up|down|restart|status|logs}
# Env: RISKGRAPH_NEO4J_PORT (7687), RISKGRAPH_NEO4J_HEAP ("-Xms1g -Xmx1g"),
#      RISKGRAPH_NEO4J_PAGECACHE_MB (256), RISKGRAPH_NEO4J_JAVA_OPTS (extra JVM flags).
# State: .state/neo4j/{lib,classes,home}; log: .state/logs/neo4j.log (+ home/logs/debug.log).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NEO4J_STATE=$STATE_DIR/neo4j
NEO4J_LIB=$NEO4J_STATE/lib
NEO4J_CLASSES=$NEO4J_STATE/classes
NEO4J_HOME=$NEO4J_STATE/home

neo4j_port() { printf '%s' "${RISKGRAPH_NEO4J_PORT:-7687}"; }

neo4j_install() {
    maven_fetch neo4j "$DEPLOY_DIR/neo4j/pom.xml" "$NEO4J_LIB"
    local src=$DEPLOY_DIR/neo4j/Launcher.java cls=$NEO4J_CLASSES/Launcher.class
    if [[ ! -f "$cls" || "$src" -nt "$cls" || "$NEO4J_LIB/.pom.sha256" -nt "$cls" ]]; then
        need_cmd javac "install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
        rm -rf "$NEO4J_CLASSES"
        mkdir -p "$NEO4J_CLASSES"
        javac -nowarn -d "$NEO4J_CLASSES" -cp "$NEO4J_LIB/*" "$src" \
            || { note "deploy: error: neo4j: javac failed on $src"; return 1; }
    fi
}

neo4j_launch() {
    local port=$1
    mkdir -p "$NEO4J_HOME"
    # shellcheck disable=SC2086,SC2046  # heap/extra opts are deliberately word-split
    spawn neo4j "$port" java -Driskgraph.service=neo4j -Driskgraph.state="$STATE_DIR" \
        ${RISKGRAPH_NEO4J_HEAP:--Xms1g -Xmx1g} \
        -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        --add-opens=java.base/java.nio=ALL-UNNAMED \
        --add-opens=java.base/java.io=ALL-UNNAMED \
        --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
        -Dio.netty.tryReflectionSetAccessible=true \
        $(jvm_mode_opts) ${RISKGRAPH_NEO4J_JAVA_OPTS:-} \
        -cp "$NEO4J_CLASSES:$NEO4J_LIB/*" Launcher \
        --home "$NEO4J_HOME" --host 127.0.0.1 --port "$port" \
        --pagecache-mb "${RISKGRAPH_NEO4J_PAGECACHE_MB:-256}" --auth false \
        --conf "$DEPLOY_DIR/neo4j/neo4j.conf"
}

# Ready: a Cypher RETURN 1 over Bolt through the Python driver (venv), or, without the driver,
# a Bolt handshake plus the launcher's own "ready" line (it ran RETURN 1 in-process) in the log.
neo4j_ready() {
    port_open "$1" || return 1
    RISKGRAPH_PROBE_READY_LOG=$(svc_log neo4j) probe neo4j "$1"
}

neo4j_owns() {
    local cmd; cmd=$(pid_cmdline "$1")
    [[ "$cmd" == *"-Driskgraph.service=neo4j "* && "$cmd" == *"-Driskgraph.state=$STATE_DIR "* \
        && "$cmd" == *" Launcher "* ]]
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    dispatch "${1:-}" neo4j "${@:2}"
fi
