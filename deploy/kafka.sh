#!/usr/bin/env bash
# Apache Kafka 3.9 (KRaft, one broker+controller) on 127.0.0.1, jars from Maven Central.
#   deploy/kafka.sh {install|up|down|restart|status|logs}
# Env: RISKGRAPH_KAFKA_PORT (9092), RISKGRAPH_KAFKA_CONTROLLER_PORT (9093),
#      RISKGRAPH_KAFKA_HEAP ("-Xms256m -Xmx512m"), RISKGRAPH_KAFKA_JAVA_OPTS (extra JVM flags).
# State: .state/kafka/{lib,data,server.properties,cluster-id}; log: .state/logs/kafka.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_HOME=$STATE_DIR/kafka
KAFKA_LIB=$KAFKA_HOME/lib
KAFKA_DATA=$KAFKA_HOME/data

kafka_port() { printf '%s' "${RISKGRAPH_KAFKA_PORT:-9092}"; }
kafka_controller_port() { printf '%s' "${RISKGRAPH_KAFKA_CONTROLLER_PORT:-9093}"; }

kafka_install() {
    maven_fetch kafka "$DEPLOY_DIR/kafka/pom.xml" "$KAFKA_LIB"
}

kafka_tool() {  # short-lived Kafka CLI class (StorageTool) on the same classpath
    # shellcheck disable=SC2046
    java $(jvm_mode_opts) -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$DEPLOY_DIR/kafka/log4j.properties" \
        -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$KAFKA_LIB/*" "$@"
}

kafka_launch() {
    local port=$1 cport conf id
    cport=$(kafka_controller_port)
    if port_open "$cport"; then
        note "deploy: error: kafka: controller port $cport is in use; set RISKGRAPH_KAFKA_CONTROLLER_PORT"
        return 1
    fi
    mkdir -p "$KAFKA_DATA"
    conf=$KAFKA_HOME/server.properties
    sed -e "s|@PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" -e "s|@DATA_DIR@|$KAFKA_DATA|g" \
        "$DEPLOY_DIR/kafka/server.properties.in" >"$conf"
    # First start: format the KRaft storage with a fresh cluster id (kept in .state/kafka/cluster-id).
    if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
        if [[ ! -s "$KAFKA_HOME/cluster-id" ]]; then
            # Same format as `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding.
            "$PROBE_PY" -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break' >"$KAFKA_HOME/cluster-id" || true
        fi
        id=$(tr -d '[:space:]' <"$KAFKA_HOME/cluster-id")
        [[ -n "$id" ]] || { note "deploy: error: kafka: could not generate a cluster id"; log_tail kafka; return 1; }
        if ! kafka_tool kafka.tools.StorageTool format -t "$id" -c "$conf" --ignore-formatted \
                >>"$(svc_log kafka)" 2>&1 </dev/null; then
            note "deploy: error: kafka: formatting $KAFKA_DATA failed"
            log_tail kafka
            return 1
        fi
    fi
    # shellcheck disable=SC2086,SC2046  # heap/extra opts are deliberately word-split
    spawn kafka "$port" java -Driskgraph.service=kafka -Driskgraph.state="$STATE_DIR" \
        ${RISKGRAPH_KAFKA_HEAP:--Xms256m -Xmx512m} \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        $(jvm_mode_opts) ${RISKGRAPH_KAFKA_JAVA_OPTS:-} \
        -Dlog4j.configuration="file:$DEPLOY_DIR/kafka/log4j.properties" \
        -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$conf"
}

kafka_ready() { port_open "$1" && probe kafka "$1"; }

kafka_owns() {
    local cmd; cmd=$(pid_cmdline "$1")
    [[ "$cmd" == *"-Driskgraph.service=kafka "* && "$cmd" == *"-Driskgraph.state=$STATE_DIR "* \
        && "$cmd" == *" kafka.Kafka "* ]]
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    dispatch "${1:-}" kafka "${@:2}"
fi
