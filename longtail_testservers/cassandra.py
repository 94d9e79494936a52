"""Apache Cassandra 5.0.x, single node: it speaks the CQL protocol scylla-driver uses
(ScyllaDB itself is not on Maven Central)."""
from __future__ import annotations

import os
import pathlib
import shutil
import time
from dataclasses import dataclass

from longtail_cli.launcher import free_port  # one port allocator for the servers and the services
from longtail_common.config import ScyllaConfig
from longtail_testservers.errors import TestServerError
from longtail_testservers.jars import java_exe, java_major_version, resolve_jars
from longtail_testservers.process import HOST, JavaServer, java_base, retry_on_bind

# From process spawn to a real answer. Generous: on a loaded 2-core machine the three JVMs start at once.
CASSANDRA_DEADLINE_S = 240.0
CASSANDRA_DC = "datacenter1"  # SimpleSnitch's data-centre name

# conf/jvm17-server.options of Cassandra 5.0 (the flags the stock scripts pass on Java 17).
_CASSANDRA_JVM17 = """
-XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
-XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70
-Djdk.attach.allowAttachSelf=true
--add-exports java.base/jdk.internal.misc=ALL-UNNAMED
--add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
--add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
--add-exports java.sql/java.sql=ALL-UNNAMED
--add-exports java.base/java.lang.ref=ALL-UNNAMED
--add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
--add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
--add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
--add-opens java.base/java.lang.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.loader=ALL-UNNAMED
--add-opens java.base/jdk.internal.ref=ALL-UNNAMED
--add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
--add-opens java.base/jdk.internal.math=ALL-UNNAMED
--add-opens java.base/jdk.internal.module=ALL-UNNAMED
--add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
--add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
--add-opens java.base/sun.nio.ch=ALL-UNNAMED
--add-opens java.base/java.io=ALL-UNNAMED
--add-opens java.base/java.lang.reflect=ALL-UNNAMED
--add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
--add-opens java.base/java.lang=ALL-UNNAMED
--add-opens java.base/java.util=ALL-UNNAMED
-Dio.netty.tryReflectionSetAccessible=true
-Dio.netty.allocator.useCacheForAllThreads=true
-Dio.netty.allocator.maxOrder=11
""".split()

_CASSANDRA_LOGBACK = """\
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


@dataclass
class CassandraServer(JavaServer):
    host: str = HOST
    native_port: int = 0
    storage_port: int = 0
    datacenter: str = CASSANDRA_DC

    kind = "cassandra"

    @property
    def port(self) -> int:
        return self.native_port

    def scylla_config(self, keyspace: str = "longtail") -> ScyllaConfig:
        return ScyllaConfig(contact_points=[self.host], port=self.native_port, keyspace=keyspace,
                            local_dc=self.datacenter,
                            replication="{'class': 'SimpleStrategy', 'replication_factor': 1}",
                            consistency="LOCAL_QUORUM")

    def write_config(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.dir / "logback.xml").write_text(_CASSANDRA_LOGBACK)
        (self.dir / "cassandra.yaml").write_text(f"""\
# Single-node Cassandra for tests, written by longtail_testservers/cassandra.py
cluster_name: longtail-test
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{self.host}:{self.storage_port}"
listen_address: {self.host}
rpc_address: {self.host}
storage_port: {self.storage_port}
native_transport_port: {self.native_port}
start_native_transport: true
data_file_directories: ["{data / 'data'}"]
commitlog_directory: "{data / 'commitlog'}"
saved_caches_directory: "{data / 'saved_caches'}"
hints_directory: "{data / 'hints'}"
cdc_raw_directory: "{data / 'cdc_raw'}"
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 16MiB
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
# small and quick: tests create and drop keyspaces, nothing is kept
auto_snapshot: false
snapshot_before_compaction: false
hinted_handoff_enabled: false
dynamic_snitch: false
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_compactors: 1
key_cache_size: 16MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 16MiB
""")

    def command(self) -> list[str]:
        jars = resolve_jars(["cassandra"])["cassandra"]
        jamm = sorted(jars.glob("jamm-*.jar"))
        extra = ["-Xmn256m", "-Xss256k", "-XX:+ExitOnOutOfMemoryError", *_CASSANDRA_JVM17]
        java = java_exe()
        if java and java_major_version(java) >= 18:
            # Cassandra 5.0 installs a SecurityManager, which Java 18+ refuses by default.
            extra.append("-Djava.security.manager=allow")
        if jamm:
            extra.append(f"-javaagent:{jamm[-1]}")
        return java_base("1G", "1G", extra) + [
            f"-Dcassandra.config=file://{self.dir / 'cassandra.yaml'}",
            f"-Dcassandra.storagedir={self.dir / 'data'}",
            f"-Dcassandra.logdir={self.dir / 'logs'}",
            f"-Dlogback.configurationFile={self.dir / 'logback.xml'}",
            "-Dcassandra-foreground=yes",
            # a single fresh node: no gossip to wait for, no ring delay
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=0",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-cp", f"{jars}/*", "org.apache.cassandra.service.CassandraDaemon",
        ]

    def cluster(self, **kwargs):
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        profile = ExecutionProfile(load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(self.datacenter)),
                                   request_timeout=10)
        return Cluster([self.host], port=self.native_port, protocol_version=4,
                       execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kwargs)

    def check(self) -> None:
        cluster = self.cluster(connect_timeout=5, control_connection_timeout=5)
        try:
            session = cluster.connect()
            row = session.execute("SELECT release_version, bootstrapped FROM system.local").one()
            if row is None or row.bootstrapped != "COMPLETED":
                raise TestServerError(f"not bootstrapped yet: {row}")
        finally:
            cluster.shutdown()

    def launch(self, deadline_s: float = CASSANDRA_DEADLINE_S) -> None:
        started = time.monotonic()
        self.spawn(self.command())
        try:
            self.wait_ready(self.check, deadline_s, self.native_port)
        except TestServerError as exc:
            exc.server = self
            raise
        self.startup_s = round(time.monotonic() - started, 2)


def start_cassandra(dir: str | os.PathLike, deadline_s: float = CASSANDRA_DEADLINE_S) -> CassandraServer:
    """Start a single-node Cassandra under `dir`; returns once a CQL query succeeds."""
    root = pathlib.Path(dir).resolve()

    def once() -> CassandraServer:
        if root.exists():  # a failed attempt's data would keep the old ports' ring state
            shutil.rmtree(root / "data", ignore_errors=True)
        server = CassandraServer(name="cassandra", dir=root, native_port=free_port(), storage_port=free_port())
        server.write_config()
        server.launch(deadline_s)
        return server

    return retry_on_bind(once)
