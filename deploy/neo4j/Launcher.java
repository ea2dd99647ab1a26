// Minimal Neo4j 5.26 Community server for local tests: one embedded DBMS with Bolt on loopback.
//
// Built and started by deploy/neo4j.sh (javac against the jars that deploy/neo4j/pom.xml pulls
// from Maven Central; no Neo4j tarball needed). Usage:
//
//   java <jvm flags> -cp 'classes:lib/*' Launcher --home DIR [--host 127.0.0.1] [--port 7687]
//        [--pagecache-mb 256] [--auth false] [--conf FILE]
//
// Authentication is OFF unless --auth true: fine for loopback tests, never for anything shared.
// With --auth true the default neo4j/neo4j credentials apply and must be changed on first login,
// as on a packaged server. --conf loads extra neo4j.conf-style settings (applied first; the flags
// above win). SIGTERM runs the shutdown hook, which checkpoints and closes the store cleanly.

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.logging.log4j.Log4jLogProvider;

public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Exception {
        Path home = null;
        Path conf = null;
        String host = "127.0.0.1";
        int port = 7687;
        long pagecacheMb = 256;
        boolean auth = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--home" -> home = Path.of(v).toAbsolutePath();
                case "--conf" -> conf = Path.of(v).toAbsolutePath();
                case "--host" -> host = v;
                case "--port" -> port = Integer.parseInt(v);
                case "--pagecache-mb" -> pagecacheMb = Long.parseLong(v);
                case "--auth" -> auth = Boolean.parseBoolean(v);
                default -> usage("unknown argument " + a);
            }
        }
        if (home == null) {
            usage("--home is required");
        }
        Files.createDirectories(home);

        PrintStream out = System.out;
        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home);
        if (conf != null && Files.isRegularFile(conf)) {
            builder.loadPropertiesFromFile(conf);
        }
        builder.setUserLogProvider(new Log4jLogProvider(out))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress(host, port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress(host, port))
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pagecacheMb))
                .setConfig(GraphDatabaseSettings.auth_enabled, auth)
                .setConfig(GraphDatabaseSettings.udc_enabled, false);

        long t0 = System.nanoTime();
        DatabaseManagementService dbms = builder.build();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            out.println("riskgraph-neo4j: shutting down");
            try {
                dbms.shutdown();
            } finally {
                out.println("riskgraph-neo4j: stopped");
                out.flush();
                stopped.countDown();
            }
        }, "riskgraph-neo4j-shutdown"));

        // Prove the default database answers before announcing readiness.
        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        db.executeTransactionally("RETURN 1");
        out.printf("riskgraph-neo4j: ready bolt://%s:%d auth=%s pagecache=%dm home=%s (%.1fs)%n",
                host, port, auth, pagecacheMb, home, (System.nanoTime() - t0) / 1e9);
        out.flush();
        stopped.await();
    }

    private static void usage(String why) {
        System.err.println("riskgraph-neo4j: " + why);
        System.err.println("usage: Launcher --home DIR [--host H] [--port P] [--pagecache-mb N]"
                + " [--auth true|false] [--conf FILE]");
        System.exit(2);
    }
}
