"""deploy/compose.yaml and its config, checked statically (no Docker engine runs here):
every service is runnable, what it mounts exists, the Longtail config it mounts loads and
points at the compose services, and ports and environment values are well-formed."""
from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest
import yaml

from longtail_common.config import load_config

DEPLOY = pathlib.Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # safe_load resolves the x- anchors/merges


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _config_path(service: dict) -> pathlib.Path | None:
    for volume in service.get("volumes", []):
        host, _, rest = volume.partition(":")
        if rest.split(":")[0] == "/etc/longtail/longtail.toml":
            return (DEPLOY / host).resolve()
    return None


def test_every_service_has_an_image_or_a_build_that_exists(services):
    assert {"scylla", "kafka", "minio", "metadata", "upload", "transcoder", "placement", "gateway"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "build" in svc:
            context = (DEPLOY / svc["build"]["context"]).resolve()
            assert (context / svc["build"]["dockerfile"]).is_file(), name
            assert (context / "pyproject.toml").is_file(), name
        if "image" in svc:
            # Pinned tags, never an implicit :latest (reproducible deployments).
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", svc["image"]) and not svc["image"].endswith(":latest"), name


def test_dockerfile_copies_every_package_it_runs(services):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for name, svc in services.items():
        command = svc.get("command") or []
        if command[:2] == ["python", "-m"]:
            module = command[2]
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
            assert f"COPY {module}/ {module}/" in dockerfile, f"{name}: image lacks {module}/"
        elif command[:1] == ["longtail"]:
            assert "[project.scripts]" in (DEPLOY.parent / "pyproject.toml").read_text()


def test_dependencies_and_volumes_are_defined(compose, services):
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: undeclared volume {source}"


def test_ports_and_environment_are_well_formed(services):
    published = []
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and re.fullmatch(r"\d{1,5}:\d{1,5}", port), f"{name}: port {port!r}"
            host, container = map(int, port.split(":"))
            assert 0 < host < 65536 and 0 < container < 65536
            published.append(host)
        env = svc.get("environment", {})
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        for key, value in env.items():
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{name}: env {key}"
            assert isinstance(value, str), f"{name}: {key} must be a quoted string, not {value!r}"
    assert len(published) == len(set(published)), "two services publish the same host port"


def test_longtail_config_loads_and_points_at_the_compose_services(services):
    paths = {_config_path(svc) for name, svc in services.items() if "build" in svc}
    assert len(paths) == 1 and None not in paths, "every Longtail container mounts the one config"
    cfg = load_config(paths.pop(), env={})
    assert (cfg.backends.metadata, cfg.backends.objects, cfg.backends.topics) == ("scylla", "s3", "kafka")
    assert cfg.scylla.contact_points == ["scylla"] and cfg.scylla.port == 9042
    assert cfg.scylla.consistency == "LOCAL_QUORUM"

    def host_port(address: str) -> tuple[str, int]:
        host, port = address.rsplit(":", 1)
        return host, int(port)

    kafka_env = services["kafka"]["environment"]
    assert f"PLAINTEXT://{cfg.kafka.bootstrap_servers}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert host_port(cfg.s3.endpoint) == ("minio", 9000)
    assert cfg.s3.access_key == services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert cfg.s3.secret_key == services["minio"]["environment"]["MINIO_ROOT_PASSWORD"]
    for field in ("metadata", "upload", "placement", "search"):
        host, _port = host_port(getattr(cfg.services, field))
        assert host == field and host in services, f"services.{field} must name its compose service"
    for name, svc in services.items():
        if "build" in svc and svc.get("healthcheck", {}).get("test"):
            check = " ".join(svc["healthcheck"]["test"])
            address = re.search(r"wait_for_serving\('([^']+)'", check)
            if address:
                assert address.group(1) == getattr(cfg.services, name), f"{name} health check address"


def test_services_wait_for_schema_and_backends(services):
    assert services["migrate"]["command"] == ["longtail", "metadata", "migrate"]
    assert services["migrate"]["depends_on"]["scylla"]["condition"] == "service_healthy"
    for name in ("metadata", "upload", "transcoder", "placement", "gateway"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert {"kafka", "minio"} <= set(deps), name
    assert services["gateway"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]
