"""Real Kafka, Cassandra and S3Proxy servers on loopback, from Maven Central jars.

The real backends (Kafka topics, Scylla/Cassandra metadata, S3 objects) are tested
against actual servers, not mocks. With no Docker on the machines, the servers are
plain JVM processes whose jars Maven fetches from Central once:

* Apache Kafka 4.x in KRaft combined mode (one process is broker and controller);
* Apache Cassandra 5.0.x, which speaks the CQL protocol scylla-driver uses (ScyllaDB
  itself is not on Maven Central);
* S3Proxy with its filesystem blob store, which speaks the S3 API minio uses.

Jars: `deploy/testservers/pom.xml` (one module per server) is resolved with
`mvn dependency:copy-dependencies` into `~/.cache/longtail/testservers/` (or
`$LONGTAIL_TESTSERVERS_CACHE`), once; later runs find the jars and skip Maven.

Everything a server writes (config, data, log) lives under the directory it is started
in. Ports are picked free on 127.0.0.1. Each `start_*` returns only once the server
really answers a client request (Kafka metadata, a CQL query, an S3 bucket list), and
raises `TestServerError` with the tail of the server's log otherwise.

    servers = start_all(dir)      # writes dir/longtail.toml and dir/servers.json
    ...
    stop_all(dir)

Command line (wired as `longtail services start|stop --dir DIR`):

    python -m longtail_common.testservers start --dir DIR
    python -m longtail_common.testservers stop --dir DIR
"""
from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

from longtail_common.config import KafkaConfig, S3Config, ScyllaConfig, load_config
from longtail_common.launcher import free_port  # one port allocator for the servers and the services

log = logging.getLogger("longtail.testservers")

SERVER_NAMES = ("kafka", "cassandra", "s3proxy")
CACHE_ENV = "LONGTAIL_TESTSERVERS_CACHE"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
POM_DIR = REPO_ROOT / "deploy" / "testservers"
MISSING_JAVA_PREFIX = "Java 17+ and Maven are needed for local servers: "

# Start-up deadlines (seconds, from process spawn to a real answer). Generous: on a
# loaded 2-core machine the three JVMs start at once.
KAFKA_DEADLINE_S = 120.0
CASSANDRA_DEADLINE_S = 240.0
S3PROXY_DEADLINE_S = 90.0
STOP_TIMEOUT_S = 30.0

HOST = "127.0.0.1"
CASSANDRA_DC = "datacenter1"  # SimpleSnitch's data-centre name
S3_ACCESS_KEY = "longtail"
S3_SECRET_KEY = "longtail-secret-key"


class TestServerError(RuntimeError):
    """A server could not be fetched, started or stopped (the message says why)."""

    __test__ = False  # not a pytest test class


class JavaUnavailableError(TestServerError):
    """Java 17+ (or Maven, while the jars are not cached) is missing."""


# ---------------------------------------------------------------------------------------
# Java, Maven and the jar cache


def cache_dir() -> pathlib.Path:
    raw = os.environ.get(CACHE_ENV)
    path = pathlib.Path(raw).expanduser() if raw else pathlib.Path.home() / ".cache" / "longtail" / "testservers"
    return path.resolve()


def _java_exe() -> str | None:
    explicit = os.environ.get("LONGTAIL_JAVA")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")


_JAVA_VERSION_CACHE: dict[str, int] = {}


def java_major_version(java: str) -> int:
    """The feature version of a java binary (17 for "17.0.15", 8 for "1.8.0_402")."""
    if java in _JAVA_VERSION_CACHE:
        return _JAVA_VERSION_CACHE[java]
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    text = out.stderr + out.stdout
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        raise TestServerError(f"cannot tell the version of {java}: {text.strip()[:200]!r}")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # 1.8 -> 8
        major = int(m.group(2))
    _JAVA_VERSION_CACHE[java] = major
    return major


def _poms() -> dict[str, pathlib.Path]:
    return {name: POM_DIR / name / "pom.xml" for name in SERVER_NAMES}


def server_versions() -> dict[str, str]:
    """{'kafka': '4.3.1', ...} as pinned in deploy/testservers/*/pom.xml."""
    versions = {}
    for name, pom in _poms().items():
        m = re.search(r"<(?:kafka|cassandra|s3proxy)\.version>([^<]+)<", pom.read_text())
        versions[name] = m.group(1) if m else "?"
    return versions


def _jar_dir(name: str) -> pathlib.Path:
    """Cache folder of one server's jars, keyed by the poms so an edited pom refetches."""
    digest = hashlib.sha256()
    for pom in (POM_DIR / "pom.xml", POM_DIR / name / "pom.xml"):
        digest.update(pom.read_bytes())
    return cache_dir() / f"{name}-{server_versions()[name]}-{digest.hexdigest()[:10]}"


def jars_cached(names=SERVER_NAMES) -> bool:
    try:
        return all((_jar_dir(n) / ".complete").exists() for n in names)
    except OSError:
        return False


def java_available() -> tuple[bool, str]:
    """(True, description) when the servers can be started here, else (False, reason).

    Needs Java 17+ always, and Maven while the jars are not cached yet.
    """
    if not POM_DIR.joinpath("pom.xml").exists():
        return False, f"{POM_DIR}/pom.xml is missing (run from a source checkout of Longtail)"
    java = _java_exe()
    if not java:
        return False, "no `java` on PATH (install OpenJDK 17, e.g. `apt-get install openjdk-17-jdk-headless`)"
    try:
        major = java_major_version(java)
    except (OSError, subprocess.SubprocessError, TestServerError) as exc:
        return False, f"`{java} -version` failed: {exc}"
    if major < 17:
        return False, f"{java} is Java {major}; Kafka 4, Cassandra 5.0 and S3Proxy need Java 17+"
    desc = f"Java {major} at {java}"
    if jars_cached():
        return True, desc + f"; jars cached in {cache_dir()}"
    mvn = shutil.which("mvn")
    if not mvn:
        return False, (f"no `mvn` on PATH to fetch the server jars into {cache_dir()} "
                       "(install Maven, e.g. `apt-get install maven`)")
    return True, desc + f"; Maven at {mvn} will fetch the jars into {cache_dir()}"


@contextlib.contextmanager
def _file_lock(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_jars(names=SERVER_NAMES, timeout_s: float = 1200) -> dict[str, pathlib.Path]:
    """The jar folder of each server, fetching the missing ones with one Maven run.

    Safe to call from several processes at once (a file lock serialises Maven).
    """
    dirs = {n: _jar_dir(n) for n in names}
    missing = [n for n in names if not (dirs[n] / ".complete").exists()]
    if not missing:
        return dirs
    cache = cache_dir()
    with _file_lock(cache / ".lock"):
        missing = [n for n in names if not (dirs[n] / ".complete").exists()]
        if not missing:
            return dirs
        mvn = shutil.which("mvn")
        if not mvn:
            raise JavaUnavailableError(MISSING_JAVA_PREFIX + "no `mvn` on PATH to fetch the server jars")
        staging = pathlib.Path(tempfile.mkdtemp(dir=cache, prefix=".staging-"))
        try:
            cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(POM_DIR / "pom.xml"), "-pl", ",".join(missing),
                   "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                   f"-Dtestservers.out={staging}"]
            log.info("fetching jars for %s with Maven into %s", ", ".join(missing), cache)
            started = time.monotonic()
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                     stdin=subprocess.DEVNULL, cwd=POM_DIR)
            except subprocess.TimeoutExpired as exc:
                raise TestServerError(f"Maven did not finish fetching {missing} within {timeout_s:.0f}s: "
                                      f"{' '.join(cmd)}") from exc
            if out.returncode != 0:
                tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-40:])
                raise TestServerError(f"Maven failed ({out.returncode}) fetching the {', '.join(missing)} jars:\n"
                                      f"$ {' '.join(cmd)}\n{tail}")
            elapsed = time.monotonic() - started
            for n in missing:
                got = staging / n
                jars = sorted(p.name for p in got.glob("*.jar")) if got.is_dir() else []
                if not jars:
                    raise TestServerError(f"Maven copied no jars for {n} into {got}")
                (got / ".complete").write_text(json.dumps(
                    {"fetched_at": time.time(), "maven_seconds": round(elapsed, 1), "jars": jars}, indent=1))
                if dirs[n].exists():
                    shutil.rmtree(dirs[n])
                os.replace(got, dirs[n])
            log.info("fetched jars for %s in %.1fs", ", ".join(missing), elapsed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dirs


# ---------------------------------------------------------------------------------------
# Processes

def _port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: pathlib.Path, lines: int = 60) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def _pid_cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


# Popen objects of the servers this process started, so stop() can reap them.
_LIVE: dict[int, subprocess.Popen] = {}


def _stop_pid(pid: int, marker: str, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM the process group of `pid`, wait, then SIGKILL. Returns whether it ran.

    `marker` (a path that is on the server's command line) guards against killing an
    unrelated process that reused the pid.
    """
    proc = _LIVE.get(pid)
    if proc is not None and proc.poll() is not None:
        _LIVE.pop(pid, None)
        return False
    if proc is None and (not _pid_alive(pid) or marker not in _pid_cmdline(pid)):
        return False

    def signal_group(sig):
        try:
            os.killpg(pid, sig)  # each server leads its own session/process group
        except ProcessLookupError:
            pass
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def wait(limit: float) -> bool:
        if proc is not None:
            try:
                proc.wait(timeout=limit)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return True
            time.sleep(0.1)
        return not _pid_alive(pid)

    signal_group(signal.SIGTERM)
    if not wait(timeout_s):
        log.warning("pid %d did not stop within %.0fs of SIGTERM; sending SIGKILL", pid, timeout_s)
        signal_group(signal.SIGKILL)
        wait(10)
    _LIVE.pop(pid, None)
    return True


@dataclass
class JavaServer:
    """One server process. Subclasses add their ports and client config."""

    name: str
    dir: pathlib.Path
    argv: list[str] = field(default_factory=list)
    pid: int = 0
    startup_s: float = 0.0  # from spawn to the first real answer
    log_path: pathlib.Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False, compare=False)

    kind = "java"

    @property
    def log_file(self) -> pathlib.Path:
        return self.log_path or (self.dir / f"{self.name}.log")

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.argv = argv
        self.log_path = self.log_file
        with open(self.log_path, "ab") as logfh:
            logfh.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            logfh.flush()
            self._proc = subprocess.Popen(
                argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **(env or {})},
            )
        self.pid = self._proc.pid
        _LIVE[self.pid] = self._proc

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return bool(self.pid) and _pid_alive(self.pid) and str(self.dir) in _pid_cmdline(self.pid)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.pid:
            _stop_pid(self.pid, str(self.dir), timeout_s)
        self._proc = None

    def wait_ready(self, check, deadline_s: float, port: int) -> None:
        """Poll `check()` (after `port` accepts connections) until it returns without raising."""
        started = time.monotonic()
        last_error: Exception | None = None
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise TestServerError(
                    f"{self.name} exited with code {self._proc.returncode} during start-up "
                    f"(log {self.log_file}):\n{_tail(self.log_file)}")
            if _port_open(port):
                try:
                    check()
                    return
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = exc
            if time.monotonic() - started > deadline_s:
                self.stop(timeout_s=5)
                raise TestServerError(
                    f"{self.name} did not answer on {HOST}:{port} within {deadline_s:.0f}s "
                    f"(last error: {last_error!r}; log {self.log_file}):\n{_tail(self.log_file)}")
            time.sleep(0.25)

    def bind_failed(self) -> bool:
        text = _tail(self.log_file, 400)
        return any(s in text for s in ("Address already in use", "BindException", "Failed to bind"))

    def to_json(self) -> dict:
        data = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_") or f.name == "argv":
                continue
            value = getattr(self, f.name)
            data[f.name] = str(value) if isinstance(value, pathlib.Path) else value
        data["port"] = getattr(self, "port", 0)
        data["kind"] = self.kind
        return data


def _java_base(xms: str, xmx: str, extra: list[str] | None = None) -> list[str]:
    java = _java_exe()
    if not java:
        raise JavaUnavailableError(MISSING_JAVA_PREFIX + "no `java` on PATH")
    return [java, f"-Xms{xms}", f"-Xmx{xmx}", "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            *(extra or [])]


def _retry_on_bind(start_once, attempts: int = 3):
    """Ports are picked free but another process may take one before the JVM binds it."""
    for attempt in range(attempts):
        try:
            return start_once()
        except TestServerError as exc:
            server = getattr(exc, "server", None)
            if server is None or not server.bind_failed() or attempt == attempts - 1:
                raise
            log.warning("%s could not bind its ports; retrying with new ones", server.name)


# ---------------------------------------------------------------------------------------
# Kafka (KRaft, combined broker + controller)

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
# Single-node Kafka in KRaft combined mode, written by longtail_common/testservers.py
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
        return _java_base("128m", heap, ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
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
        _update_state_pid(self)
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

    return _retry_on_bind(once)


def restart_kafka(server: KafkaServer, downtime_s: float = 0.0) -> KafkaServer:
    return server.restart(downtime_s)


# ---------------------------------------------------------------------------------------
# Cassandra

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
# Single-node Cassandra for tests, written by longtail_common/testservers.py
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
        java = _java_exe()
        if java and java_major_version(java) >= 18:
            # Cassandra 5.0 installs a SecurityManager, which Java 18+ refuses by default.
            extra.append("-Djava.security.manager=allow")
        if jamm:
            extra.append(f"-javaagent:{jamm[-1]}")
        return _java_base("1G", "1G", extra) + [
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

    return _retry_on_bind(once)


# ---------------------------------------------------------------------------------------
# S3Proxy


@dataclass
class S3ProxyServer(JavaServer):
    host: str = HOST
    port: int = 0
    access_key: str = S3_ACCESS_KEY
    secret_key: str = S3_SECRET_KEY

    kind = "s3proxy"

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def s3_config(self, bucket_prefix: str = "longtail-") -> S3Config:
        return S3Config(endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                        secure=False, region="us-east-1", bucket_prefix=bucket_prefix)

    def write_config(self) -> None:
        blobs = self.dir / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        (self.dir / "s3proxy.conf").write_text(f"""\
# S3Proxy for tests, written by longtail_common/testservers.py
s3proxy.endpoint=http://{self.host}:{self.port}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity={self.access_key}
s3proxy.credential={self.secret_key}
jclouds.provider=filesystem-nio2
jclouds.filesystem.basedir={blobs}
""")

    def command(self) -> list[str]:
        jars = resolve_jars(["s3proxy"])["s3proxy"]
        fat = sorted(jars.glob("s3proxy-*-jar-with-dependencies.jar"))
        if not fat:
            raise TestServerError(f"no s3proxy jar-with-dependencies in {jars}")
        return _java_base("64m", "256m", ["-XX:+UseSerialGC",
                                   "-Dlogback.statusListenerClass=ch.qos.logback.core.status.NopStatusListener"]) + [
            "-jar", str(fat[-1]), "--properties", str(self.dir / "s3proxy.conf")]

    def client(self):
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False,
                     region="us-east-1")

    def check(self) -> None:
        self.client().list_buckets()

    def launch(self, deadline_s: float = S3PROXY_DEADLINE_S) -> None:
        started = time.monotonic()
        self.spawn(self.command())
        try:
            self.wait_ready(self.check, deadline_s, self.port)
        except TestServerError as exc:
            exc.server = self
            raise
        self.startup_s = round(time.monotonic() - started, 2)


def start_s3proxy(dir: str | os.PathLike, deadline_s: float = S3PROXY_DEADLINE_S) -> S3ProxyServer:
    """Start S3Proxy over `dir`/blobs; returns once an S3 bucket listing succeeds."""
    root = pathlib.Path(dir).resolve()

    def once() -> S3ProxyServer:
        server = S3ProxyServer(name="s3proxy", dir=root, port=free_port())
        server.write_config()
        server.launch(deadline_s)
        return server

    return _retry_on_bind(once)


# ---------------------------------------------------------------------------------------
# All three


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_toml(kafka: KafkaServer, cassandra: CassandraServer, s3: S3ProxyServer) -> str:
    lines = ["# Written by `longtail services start`: the real backends on this machine.",
             "# Use with `longtail up --config <this file>`.", "",
             "[backends]", 'metadata = "scylla"', 'objects = "s3"', 'topics = "kafka"', ""]
    sections = (("scylla", cassandra.scylla_config()), ("s3", s3.s3_config()), ("kafka", kafka.kafka_config()))
    for section, cfg in sections:
        lines.append(f"[{section}]")
        for key, value in dataclasses.asdict(cfg).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def start_all(dir: str | os.PathLike, deadlines: dict[str, float] | None = None) -> dict:
    """Start Kafka, Cassandra and S3Proxy (in parallel) under `dir`.

    Writes `dir/longtail.toml` (a config using all three) and `dir/servers.json`. Returns
    {"kafka": KafkaServer, "cassandra": CassandraServer, "s3proxy": S3ProxyServer,
     "config": Config, "config_path": Path, "dir": Path, "resolve_s": float}.
    If any server fails, the others are stopped and TestServerError is raised.
    """
    root = pathlib.Path(dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    ok, reason = java_available()
    if not ok:
        raise JavaUnavailableError(MISSING_JAVA_PREFIX + reason)
    deadlines = deadlines or {}
    t0 = time.monotonic()
    resolve_jars()
    resolve_s = round(time.monotonic() - t0, 2)
    starters = {
        "cassandra": lambda: start_cassandra(root / "cassandra", deadlines.get("cassandra", CASSANDRA_DEADLINE_S)),
        "kafka": lambda: start_kafka(root / "kafka", deadlines.get("kafka", KAFKA_DEADLINE_S)),
        "s3proxy": lambda: start_s3proxy(root / "s3proxy", deadlines.get("s3proxy", S3PROXY_DEADLINE_S)),
    }
    started: dict[str, JavaServer] = {}
    errors: dict[str, BaseException] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=3, thread_name_prefix="testserver") as pool:
        futures = {pool.submit(fn): name for name, fn in starters.items()}
        for fut in concurrent.futures.as_completed(futures):
            name = futures[fut]
            try:
                started[name] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors[name] = exc
    if errors:
        for server in started.values():
            server.stop()
        msg = "\n\n".join(f"[{name}] {exc}" for name, exc in errors.items())
        raise TestServerError(f"could not start {', '.join(errors)}:\n{msg}")
    kafka, cassandra, s3 = started["kafka"], started["cassandra"], started["s3proxy"]
    config_path = root / "longtail.toml"
    config_path.write_text(config_toml(kafka, cassandra, s3))
    total_s = round(time.monotonic() - t0, 2)
    _write_state(root, {"kafka": kafka, "cassandra": cassandra, "s3proxy": s3}, resolve_s, total_s)
    cfg = load_config(config_path, env={})
    return {"kafka": kafka, "cassandra": cassandra, "s3proxy": s3, "config": cfg, "config_path": config_path,
            "dir": root, "resolve_s": resolve_s, "total_s": total_s}


def _write_state(root: pathlib.Path, servers: dict[str, JavaServer], resolve_s: float, total_s: float) -> None:
    state = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": str(root / "longtail.toml"),
        "versions": server_versions(),
        "jar_cache": str(cache_dir()),
        "resolve_s": resolve_s,
        "total_s": total_s,
        "servers": {name: server.to_json() for name, server in servers.items()},
    }
    tmp = root / "servers.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, root / "servers.json")


def _update_state_pid(server: JavaServer) -> None:
    """After a restart, point servers.json (if this server is in one) at the new pid."""
    path = server.dir.parent / "servers.json"
    state = read_state(server.dir.parent)
    if not state or server.name not in state.get("servers", {}):
        return
    if state["servers"][server.name].get("dir") != str(server.dir):
        return
    state["servers"][server.name] = server.to_json()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def read_state(dir: str | os.PathLike) -> dict | None:
    path = pathlib.Path(dir).resolve() / "servers.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def stop_all(dir: str | os.PathLike, timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop the servers recorded in `dir/servers.json` (in parallel). Returns the names stopped."""
    state = read_state(dir)
    if not state:
        return []
    stopped: list[str] = []

    def stop_one(name, info):
        if _stop_pid(int(info["pid"]), info["dir"], timeout_s):
            stopped.append(name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda item: stop_one(*item), state.get("servers", {}).items()))
    return sorted(stopped)


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="longtail services",
                                     description="Local Kafka, Cassandra and S3Proxy for the real backends")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", required=True, help="where the servers keep config, data and logs")
    args = parser.parse_args(argv)
    root = pathlib.Path(args.dir).resolve()

    if args.action == "stop":
        stopped = stop_all(root)
        print(f"stopped {', '.join(stopped)}" if stopped else f"no servers running from {root}")
        return 0

    if args.action == "status":
        state = read_state(root)
        if not state:
            print(f"no servers started from {root}")
            return 1
        running = 0
        for name, info in state["servers"].items():
            alive = _pid_alive(int(info["pid"])) and info["dir"] in _pid_cmdline(int(info["pid"]))
            running += alive
            print(f"{name:10} pid {info['pid']:>7}  port {info['port']:>5}  {'running' if alive else 'stopped'}")
        print(f"config: {state['config']}")
        return 0 if running == len(state["servers"]) else 1

    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("  %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    state = read_state(root)
    if state and any(_pid_alive(int(i["pid"])) and i["dir"] in _pid_cmdline(int(i["pid"]))
                     for i in state["servers"].values()):
        print(f"servers from {root} are already running; `longtail services stop --dir {args.dir}` first",
              file=sys.stderr)
        return 1
    ok, reason = java_available()
    if not ok:
        print(MISSING_JAVA_PREFIX + reason, file=sys.stderr)
        return 2
    print(f"starting Kafka, Cassandra and S3Proxy under {root} ({reason}) ...", flush=True)
    try:
        servers = start_all(root)
    except TestServerError as exc:
        print(f"longtail services start: {exc}", file=sys.stderr)
        return 1
    versions = server_versions()
    for name, label in (("kafka", "Kafka"), ("cassandra", "Cassandra"), ("s3proxy", "S3Proxy")):
        s = servers[name]
        print(f"  {label:9} {versions[name]:7} {HOST}:{s.port:<5}  pid {s.pid:<7}  ready in {s.startup_s:5.1f}s"
              f"  log {s.log_file}")
    print(f"config for the real backends: {servers['config_path']}")
    print(f"  longtail up --config {servers['config_path']}")
    print(f"stop with: longtail services stop --dir {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
