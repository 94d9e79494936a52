"""Apache Kafka 4.x in KRaft combined mode: one process is broker and controller."""
from __future__ import annotations

import base64
import os
import pathlib
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field

from longtail_cli.launcher import free_port  # one port allocator for the servers and the services
from longtail_common.config import KafkaConfig
from longtail_testservers.errors import TestServerError
from longtail_testservers.jars import resolve_jars
from longtail_testservers.process import HOST, JavaServer, java_base, retry_on_bind
from longtail_testservers.state import update_state_pid

# From process spawn to a real answer. Generous: on a loaded 2-core machine the three JVMs start at once.
KAFKA_DEADLINE_S = 120.0

_KAFKA_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


@dataclass
class KafkaServer(JavaServer):
    host: str = HOST
    port: int = 0
    controller_port: int = 0
    cluster_id: str = ""
    restart_s: list[float] = field(default_factory=list)  # start-up time of each restart

    kind = "kafka"

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def kafka_config(self) -> KafkaConfig:
        return KafkaConfig(bootstrap_servers=self.bootstrap_servers, partitions=4, replication_factor=1)

    @property
    def properties_path(self) -> pathlib.Path:
        return self.dir / "server.properties"

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.properties").write_text(_KAFKA_LOG4J2)
        self.properties_path.write_text(f"""\
# Single-node Kafka in KRaft combined mode, written by longtail_testservers/kafka.py
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{self.host}:{self.controller_port}
listeners=PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}
advertised.listeners=PLAINTEXT://{self.host}:{self.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.dir / 'kraft-logs'}
num.partitions=1
# Topics are created by TopicBus.ensure_topics, as in production; a typo'd topic
# fails instead of silently appearing with one partition.
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Test speed-ups: no first-rebalance delay, short sessions allowed.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.cleaner.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
""")

    def _java(self, main: str, *args: str, heap: str = "512m") -> list[str]:
        jars = resolve_jars(["kafka"])["kafka"]
        return java_base("128m", heap, ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                                 f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                                 f"-Dkafka.logs.dir={self.dir / 'logs'}"]) + [
            "-cp", f"{jars}/*", main, *args]

    def format_storage(self) -> None:
        argv = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                          "-c", str(self.properties_path), "--ignore-formatted", heap="256m")
        out = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=self.dir,
                             stdin=subprocess.DEVNULL)
        with open(self.log_file, "a") as fh:
            fh.write(f"===== kafka-storage format: {' '.join(argv)}\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            raise TestServerError(f"Kafka storage format failed ({out.returncode}):\n"
                                  f"{(out.stdout + out.stderr)[-4000:]}")

    def check(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="longtail-testservers",
                                 request_timeout_ms=5000, bootstrap_timeout_ms=5000)
        try:
            cluster = admin.describe_cluster()
            if not cluster.get("brokers"):
                raise TestServerError(f"no brokers in metadata yet: {cluster}")
            admin.list_topics()
        finally:
            admin.close()

    def launch(self, deadline_s: float = KAFKA_DEADLINE_S) -> float:
        """Start the broker on the configured ports and storage, and wait until it answers."""
        started = time.monotonic()
        self.spawn(self._java("kafka.Kafka", str(self.properties_path)))
        try:
            self.wait_ready(self.check, deadline_s, self.port)
        except TestServerError as exc:
            exc.server = self
            raise
        return round(time.monotonic() - started, 2)

    def restart(self, downtime_s: float = 0.0, deadline_s: float = KAFKA_DEADLINE_S) -> "KafkaServer":
        """Stop the broker and start it again: same ports, same log dir, same cluster id."""
        self.stop()
        if downtime_s:
            time.sleep(downtime_s)
        self.restart_s.append(self.launch(deadline_s))
        update_state_pid(self)
        return self


def kafka_cluster_id() -> str:
    """A random KRaft cluster id (base64url of a UUID) that does not start with "-": the
    storage tool's argument parser would take such an id for an option (Kafka's own
    Uuid.randomUuid() redraws for the same reason)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka(dir: str | os.PathLike, deadline_s: float = KAFKA_DEADLINE_S) -> KafkaServer:
    """Format and start a single-node KRaft broker under `dir` (its own folder)."""
    root = pathlib.Path(dir).resolve()

    def once() -> KafkaServer:
        started = time.monotonic()
        server = KafkaServer(name="kafka", dir=root, port=free_port(), controller_port=free_port(),
                             cluster_id=kafka_cluster_id())
        shutil.rmtree(root / "kraft-logs", ignore_errors=True)  # fresh storage for a fresh cluster id
        server.write_config()
        server.format_storage()
        server.launch(deadline_s)
        server.startup_s = round(time.monotonic() - started, 2)  # format included
        return server

    return retry_on_bind(once)
