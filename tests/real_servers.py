"""pytest plugin: real Kafka, Cassandra (CQL, for the Scylla backend) and S3Proxy servers,
and a real Keycloak (the OpenID Connect provider).

`real_servers` (session scope) starts all three once per test session in a temporary
directory with `longtail_testservers` (JVM processes from Maven Central jars),
and stops them at the end. With `LONGTAIL_USE_DOCKER=1` and a working Docker daemon,
ScyllaDB, Kafka and MinIO containers (testcontainers) are used instead.

* Java 17+ / Maven missing: the tests that need the servers are skipped, with the
  reason, unless the environment variable `CI` is set (to anything non-empty): then
  they fail.
* A server that is there but does not start is always a failure, never a skip.

Build backends for a test from the fixture value with `make_real_metadata_store`,
`make_real_object_store` and `make_real_topic_bus`: each gives the test its own
namespace where that is cheap (bucket prefix), or a shared one where it is not
(one test keyspace; topics are named by the tests).

`keycloak_server` (session scope, started on first use, apart from the others: it costs a
minute of CPU) is Keycloak in dev mode with the `longtail` test realm; it needs Java 21+,
found beside the default Java (see `longtail_testservers.jars.java_at_least`), and skips or
fails like the others when there is none. `keycloak_token` signs a test user in with the
password grant, for REST API tests that need a bearer token.

Load it with `-p tests.real_servers` or `pytest_plugins = ["tests.real_servers"]`.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import time
import uuid

import pytest

from longtail_common.config import Config
from longtail_testservers import cluster, jars, keycloak
from longtail_testservers.errors import MISSING_JAVA_PREFIX, JavaUnavailableError, TestServerError

TEST_KEYSPACE = "longtail_test"

_started: dict = {}  # what the session fixture started, for the terminal summary
_keycloak_started: dict = {}


def _in_ci() -> bool:
    return bool(os.environ.get("CI", "").strip())


def _unavailable(reason: str) -> None:
    """Skip (locally) or fail (CI) because the machine cannot run the servers."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so missing prerequisites fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------------------
# Docker (best effort, opt-in)


def _docker_works() -> tuple[bool, str]:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True, "docker daemon answers"
    except Exception as exc:  # noqa: BLE001
        return False, f"docker is not usable: {exc}"


def _start_docker(root: pathlib.Path) -> dict:
    """ScyllaDB, Kafka (KRaft) and MinIO containers; the same dict shape as start_all()."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.minio import MinioContainer
    from testcontainers.community.scylla import ScyllaContainer

    from longtail_common.config import BackendsConfig, KafkaConfig, S3Config, ScyllaConfig

    containers = []
    try:
        t0 = time.monotonic()
        scylla = ScyllaContainer(os.environ.get("LONGTAIL_SCYLLA_IMAGE", "scylladb/scylla:6.2"))
        scylla.start()
        containers.append(scylla)
        kafka = KafkaContainer(os.environ.get("LONGTAIL_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")).with_kraft()
        kafka.start()
        containers.append(kafka)
        minio = MinioContainer()
        minio.start()
        containers.append(minio)
        mc = minio.get_config()
        cfg = Config(
            data_dir=str(root / "data"),
            backends=BackendsConfig(metadata="scylla", objects="s3", topics="kafka"),
            scylla=ScyllaConfig(contact_points=[scylla.get_container_host_ip()],
                                port=int(scylla.get_exposed_port(9042)), local_dc="datacenter1"),
            s3=S3Config(endpoint=mc["endpoint"], access_key=mc["access_key"], secret_key=mc["secret_key"]),
            kafka=KafkaConfig(bootstrap_servers=kafka.get_bootstrap_server()),
        )
        return {"kind": "docker", "containers": containers, "config": cfg, "dir": root,
                "total_s": round(time.monotonic() - t0, 2)}
    except BaseException:
        for c in containers:
            try:
                c.stop()
            except Exception:  # noqa: BLE001
                pass
        raise


# ---------------------------------------------------------------------------------------
# The fixture


@pytest.fixture(scope="session")
def real_servers(tmp_path_factory):
    """Kafka + Cassandra + S3Proxy for the whole session: a dict with "config" (a Config
    using all three), "kafka"/"cassandra"/"s3proxy" (testservers objects), "dir"."""
    root = tmp_path_factory.mktemp("real-servers")

    if os.environ.get("LONGTAIL_USE_DOCKER") == "1":
        ok, why = _docker_works()
        if ok:
            try:
                servers = _start_docker(root)
            except Exception as exc:  # noqa: BLE001 - a server that does not start is a failure
                pytest.fail(f"real servers (docker) did not start: {exc}", pytrace=False)
            _started.update(servers)
            yield servers
            for c in reversed(servers["containers"]):
                c.stop()
            return
        print(f"\nLONGTAIL_USE_DOCKER=1 but {why}; using Java servers instead")

    ok, reason = jars.java_available()
    if not ok:
        _unavailable(MISSING_JAVA_PREFIX + reason)
    try:
        servers = cluster.start_all(root)
    except JavaUnavailableError as exc:
        _unavailable(str(exc))
    except TestServerError as exc:
        pytest.fail(f"real servers did not start: {exc}", pytrace=False)
    servers["kind"] = "java"
    _started.update(servers)
    try:
        yield servers
    finally:
        cluster.stop_all(root)  # in parallel, by the pids in servers.json
        for name in ("kafka", "cassandra", "s3proxy"):
            servers[name].stop()  # no-op unless a pid changed behind servers.json's back
        if not os.environ.get("LONGTAIL_KEEP_SERVER_DIRS"):
            # data and logs are large-ish; keep only the logs of a failed session
            for name in ("kafka", "cassandra", "s3proxy"):
                for sub in ("kraft-logs", "data", "blobs"):
                    shutil.rmtree(root / name / sub, ignore_errors=True)


@pytest.fixture(scope="session")
def keycloak_server(tmp_path_factory):
    """Keycloak with the `longtail` realm for the whole session: a KeycloakServer with
    `.issuer` (http://127.0.0.1:PORT/realms/longtail), `.client_id` ("longtail-gateway"),
    `.client_secret`, `.users` ({"alice", "bob", "carol" (realm role "admin")} -> RealmUser
    with password and email) and `.admin_user`/`.admin_password` (master realm admin API).
    Every secret and password here is a TEST one, from deploy/keycloak/longtail-realm.json."""
    ok, reason = keycloak.keycloak_available()
    if not ok:
        _unavailable(keycloak.MISSING_JAVA21_PREFIX + reason)
    root = tmp_path_factory.mktemp("keycloak")
    started = time.monotonic()
    try:
        server = keycloak.start_keycloak(root)
    except JavaUnavailableError as exc:
        _unavailable(str(exc))
    except TestServerError as exc:
        pytest.fail(f"Keycloak did not start: {exc}", pytrace=False)
    _keycloak_started.update(server=server, total_s=round(time.monotonic() - started, 1))
    try:
        yield server
    finally:
        server.stop()
        if not os.environ.get("LONGTAIL_KEEP_SERVER_DIRS"):
            shutil.rmtree(root / "data", ignore_errors=True)


def keycloak_token(server, username: str, scope: str = "openid") -> dict:
    """The token response (access_token, id_token, ...) for a test user of the realm, through
    the password grant (enabled on the test client only, for tests and scripts)."""
    import httpx

    user = server.users[username]
    response = httpx.post(f"{server.issuer}/protocol/openid-connect/token", timeout=30,
                          auth=(server.client_id, server.client_secret),
                          data={"grant_type": "password", "username": user.username,
                                "password": user.password, "scope": scope})
    response.raise_for_status()
    return response.json()


def pytest_configure(config):
    # kafka-python 3.0 loads its protocol schemas with importlib.resources' legacy API:
    # hundreds of DeprecationWarnings per session that say nothing about this project.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


def pytest_terminal_summary(terminalreporter):
    if _keycloak_started:
        server = _keycloak_started["server"]
        terminalreporter.write_line(
            f"keycloak {jars.server_versions()['keycloak']}: ready in {server.startup_s:.1f}s "
            f"({_keycloak_started['total_s']:.1f}s with any first-time fetch, build and seed; log {server.log_file})")
    if not _started:
        return
    tr = terminalreporter
    if _started.get("kind") == "docker":
        tr.write_line(f"real servers (docker): started in {_started.get('total_s')}s")
        return
    versions = jars.server_versions()
    parts = [f"{name} {versions.get(name, '?')} ready in {_started[name].startup_s:.1f}s"
             for name in ("kafka", "cassandra", "s3proxy") if name in _started]
    restarts = getattr(_started.get("kafka"), "restart_s", None)
    if restarts:
        parts.append("kafka restarts took " + ", ".join(f"{t:.1f}s" for t in restarts))
    tr.write_line(f"real servers: jars in {_started.get('resolve_s', 0):.1f}s; " + "; ".join(parts)
                  + f"; all up in {_started.get('total_s', 0):.1f}s (logs under {_started.get('dir')})")


# ---------------------------------------------------------------------------------------
# Backends over the servers (for this suite and the contract suites)


def real_config(servers: dict) -> Config:
    return servers["config"]


def make_real_metadata_store(servers: dict, keyspace: str = TEST_KEYSPACE):
    """A ScyllaMetadataStore on the session's CQL server (schema migrated). Tests share
    the keyspace, so they must use unique ids (uuid) as the contract suite does."""
    from longtail_common.adapters.scylla_metadata import ScyllaMetadataStore

    cfg = dataclasses.replace(servers["config"].scylla, keyspace=keyspace)
    return ScyllaMetadataStore(cfg)


def make_real_object_store(servers: dict, bucket_prefix: str | None = None):
    """An S3ObjectStore whose buckets are private to this call (a fresh bucket prefix)."""
    from longtail_common.adapters.s3_objects import S3ObjectStore

    prefix = bucket_prefix if bucket_prefix is not None else f"t{uuid.uuid4().hex[:8]}-"
    return S3ObjectStore(dataclasses.replace(servers["config"].s3, bucket_prefix=prefix))


def make_real_topic_bus(servers: dict, **kwargs):
    """A KafkaTopicBus on the session's broker. Topics are shared: name them uniquely
    (see `unique_topic`)."""
    from longtail_common.adapters.kafka_topics import KafkaTopicBus

    return KafkaTopicBus(servers["config"].kafka, **kwargs)


def unique_topic(base: str = "t") -> str:
    return f"{base}.{uuid.uuid4().hex[:10]}"


def restart_kafka(servers: dict, downtime_s: float = 0.0):
    """Stop and start the session's broker (same ports and data) for fault tests."""
    if servers.get("kind") != "java":
        pytest.skip("restarting Kafka needs the Java test servers")
    return servers["kafka"].restart(downtime_s)
