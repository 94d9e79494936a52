"""deploy/compose.yaml and its config, checked statically (no Docker engine runs here):
every service is runnable, what it mounts exists, the Longtail config it mounts loads and
points at the compose services, and ports and environment values are well-formed."""
from __future__ import annotations

import copy
import importlib.util
import json
import pathlib
import re
import urllib.parse

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
    for field in ("metadata", "upload", "placement", "search", "webhook"):
        host, _port = host_port(getattr(cfg.services, field))
        assert host == field and host in services, f"services.{field} must name its compose service"


def test_services_wait_for_schema_and_backends(services):
    assert services["migrate"]["command"] == ["longtail", "metadata", "migrate"]
    assert services["migrate"]["depends_on"]["scylla"]["condition"] == "service_healthy"
    for name in ("metadata", "upload", "transcoder", "placement", "gateway"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert {"kafka", "minio"} <= set(deps), name
    assert services["gateway"]["command"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]


# -- the fleet: replicas, health checks, the load balancer --------------------------------

GRPC_TIERS = ("metadata", "upload", "transcoder", "placement", "search")
REPLICATED = ("gateway", "metadata", "upload", "transcoder", "placement")
# Long-running services without a healthcheck, each for a reason the compose file states.
NO_HEALTHCHECK = {"otel-collector": "otel/opentelemetry-collector-contrib:"}  # FROM scratch: nothing to probe with
ENVOY = DEPLOY / "envoy" / "envoy.yaml"


def _compose_spec_validator():
    """The compose-spec JSON schema as check-jsonschema vendors it (no download at test time)."""
    import importlib.resources

    import jsonschema

    schema = json.loads(importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                        .joinpath("compose-spec.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_matches_the_compose_spec(compose):
    validator = _compose_spec_validator()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema really checks: a misspelt key and a wrong type are caught.
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["restartt"] = "always"
    broken["services"]["metadata"]["healthcheck"]["retries"] = [6]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_long_running_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if svc.get("restart") == "no":  # one-shot jobs: their exit status is their health
            assert svc.get("command") and "healthcheck" not in svc, name
            continue
        if name in NO_HEALTHCHECK:
            assert svc["image"].startswith(NO_HEALTHCHECK[name]) and "healthcheck" not in svc, name
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable"), name
        assert check.get("interval") and check.get("timeout") and check.get("retries", 0) >= 3, name


def test_every_replicated_tier_runs_two_or_more_replicas(services):
    for name in REPLICATED:
        svc = services[name]
        replicas = svc.get("deploy", {}).get("replicas")
        assert isinstance(replicas, int) and replicas >= 2, f"{name}: deploy.replicas {replicas!r}"
        # Replicas cannot share a container name or a published host port.
        assert "container_name" not in svc and not svc.get("ports"), name
    # search: one on purpose (its index is one consumer group's; see the compose comment).
    assert services["search"]["deploy"]["replicas"] == 1


def test_grpc_replicas_bind_every_interface_and_probe_themselves(services):
    config_path = {_config_path(svc) for svc in _longtail_services(services).values()}.pop()
    cfg = load_config(config_path, env={})
    for name in GRPC_TIERS:
        svc = services[name]
        host, port = _host_port(getattr(cfg.services, name)) if name != "transcoder" else ("transcoder", 50053)
        # Everyone else dials the compose name (every replica); the service binds 0.0.0.0.
        assert host == name
        assert svc["environment"][f"LONGTAIL_SERVICES__{name.upper()}"] == f"0.0.0.0:{port}", name
        assert svc["environment"]["LONGTAIL_MESH__IDENTITY"] == name
        # Its own server, with its own certificate, through grpc.health.v1: not the fleet's.
        assert svc["healthcheck"]["test"] == ["CMD", "python", "-m", "longtail_common.probe", name, f"127.0.0.1:{port}"]
    assert importlib.util.find_spec("longtail_common.probe") is not None
    assert "COPY longtail_common/ longtail_common/" in (DEPLOY / "Dockerfile").read_text()


def test_upload_keeps_no_state_and_gateways_share_one_signing_secret(services, compose):
    # tus bytes are staged in the object store: no volume at the upload containers' data dir.
    data_dir = services["upload"]["environment"]["LONGTAIL_DATA_DIR"]
    assert not any(v.split(":")[1] == data_dir for v in services["upload"]["volumes"])
    secret_file = services["gateway"]["environment"]["LONGTAIL_PLAYBACK__SECRET_FILE"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["gateway"]["volumes"]}
    volume = mounts[str(pathlib.PurePosixPath(secret_file).parent)]
    assert volume in compose["volumes"], "the secret must live on a named volume every gateway replica mounts"
    others = [n for n, svc in services.items() if n != "gateway" and any(v.startswith(volume + ":") for v in svc.get("volumes", []))]
    assert others == [], f"only gateways read the playback secret, not {others}"


@pytest.fixture(scope="module")
def envoy() -> dict:
    return yaml.safe_load(ENVOY.read_text())


def _deprecated_fields(message, path: str = "") -> list[str]:
    """Fields set in `message` (Any payloads included) that Envoy's API marks deprecated."""
    from google.protobuf import any_pb2, symbol_database

    if isinstance(message, any_pb2.Any):
        inner = symbol_database.Default().GetSymbol(message.TypeName())()
        message.Unpack(inner)
        return _deprecated_fields(inner, path)
    found = []
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.GetOptions().deprecated:
            found.append(where)
        if field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in (value if field.is_repeated else [value]):
                found += _deprecated_fields(item, where)
    return found


ENVOY_PAYLOAD_MODULES = ("envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
                         "envoy.extensions.filters.http.router.v3.router_pb2",
                         "envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2")


def test_envoy_config_is_a_valid_envoy_bootstrap(envoy, services):
    """Parsed into Envoy's own API messages (xds-protos: the data-plane API as gRPC ships it),
    typed_config payloads included: what `envoy --mode validate` would refuse fails here."""
    import importlib

    from google.protobuf import json_format

    from envoy.config.bootstrap.v3 import bootstrap_pb2

    # The typed_config payloads the file uses; ParseDict refuses an Any whose type is unknown.
    for module in ENVOY_PAYLOAD_MODULES:
        importlib.import_module(module)
    bootstrap = json_format.ParseDict(envoy, bootstrap_pb2.Bootstrap())
    assert len(bootstrap.static_resources.clusters) == 2
    # The admin interface (it can stop Envoy) answers the container's own health check only.
    assert bootstrap.admin.address.socket_address.address == "127.0.0.1"
    edge = services[_service_by_image(services, "envoyproxy/envoy:")]
    assert f"/dev/tcp/127.0.0.1/{bootstrap.admin.address.socket_address.port_value} " in edge["healthcheck"]["test"][1]
    assert _deprecated_fields(bootstrap) == []
    broken = copy.deepcopy(envoy)
    broken["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["use_remote_adress"] = True
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(broken, bootstrap_pb2.Bootstrap())


def _envoy_clusters(envoy: dict) -> dict[str, dict]:
    return {c["name"]: c for c in envoy["static_resources"]["clusters"]}


def _envoy_routes(envoy: dict) -> list[dict]:
    (listener,) = envoy["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    return [r for vh in hcm["typed_config"]["route_config"]["virtual_hosts"] for r in vh["routes"]]


def test_load_balancer_names_every_replicated_upstream_and_checks_its_health(services, envoy):
    edge = _service_by_image(services, "envoyproxy/envoy:")
    assert _host_path(services[edge], services[edge]["command"][services[edge]["command"].index("-c") + 1]) == ENVOY.resolve()
    clusters = _envoy_clusters(envoy)
    for name, cluster in clusters.items():
        # STRICT_DNS: every address the compose name resolves to (every replica) is a host.
        assert cluster["type"] == "STRICT_DNS" and cluster["load_assignment"]["cluster_name"] == name
        hosts = [e["endpoint"]["address"]["socket_address"]
                 for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
        for host in hosts:
            assert host["address"] in services, f"cluster {name}: {host['address']} is no compose service"
            assert host["address"] in services[edge]["depends_on"], f"{edge} must start after {host['address']}"
        (check,) = cluster["health_checks"]
        assert check["http_health_check"]["path"].startswith("/") and check["unhealthy_threshold"] >= 1, name
    gateway = clusters["gateway"]
    (host,) = [e["endpoint"]["address"]["socket_address"] for g in gateway["load_assignment"]["endpoints"] for e in g["lb_endpoints"]]
    command = services["gateway"]["command"]
    assert (host["address"], host["port_value"]) == ("gateway", int(command[command.index("--port") + 1]))
    # The balancer asks each replica the same health endpoint its own container check asks.
    assert gateway["health_checks"][0]["http_health_check"]["path"] == "/healthz"
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "outlier_detection" in gateway
    routes = _envoy_routes(envoy)
    assert {r["route"]["cluster"] for r in routes if "route" in r} == set(clusters), "a cluster no route uses, or a route to none"
    assert routes[-1]["match"] == {"prefix": "/"} and routes[-1]["route"]["cluster"] == "gateway"
    # The listener is what the edge publishes; nothing else publishes the gateways' port.
    (listener,) = envoy["static_resources"]["listeners"]
    assert f"8080:{listener['address']['socket_address']['port_value']}" in services[edge]["ports"]


def test_origin_bytes_go_from_the_object_store_through_the_balancer(services, envoy):
    """Presigned segment URLs name the balancer; it routes exactly the media bucket's reads
    to MinIO (keeping the Host the signature covers) and refuses anything else there."""
    from longtail_common.adapters.s3_objects import S3ObjectStore
    from longtail_common.ports import MEDIA_BUCKET

    cfg = load_config(_config_path(services["gateway"]), env={})
    store = S3ObjectStore(cfg.s3)
    url = urllib.parse.urlsplit(store.presigned_get_url(MEDIA_BUCKET, "videos/v1/h264/720p/seg_00001.m4s", 600))
    edge = _service_by_image(services, "envoyproxy/envoy:")
    assert (url.hostname, url.port) == ("localhost", 8080) and "8080:8080" in services[edge]["ports"]
    assert "X-Amz-Signature=" in url.query and "X-Amz-SignedHeaders=host" in url.query
    prefix = f"/{store.bucket_name(MEDIA_BUCKET)}/"
    assert url.path.startswith(prefix)
    routes = _envoy_routes(envoy)
    media = [r for r in routes if r["match"].get("prefix") == prefix]
    assert [("route" in r, "direct_response" in r) for r in media] == [(True, False), (False, True)]
    read, other = media
    assert read["route"]["cluster"] == "minio" and "host_rewrite_literal" not in read["route"]
    assert read["match"]["headers"][0]["string_match"]["safe_regex"]["regex"] == "GET|HEAD"
    assert other["direct_response"]["status"] == 403
    assert routes.index(read) < routes.index(other) < len(routes) - 1, "media routes come before the catch-all"
    (endpoint,) = _envoy_clusters(envoy)["minio"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert f"{address['address']}:{address['port_value']}" == cfg.s3.endpoint


def test_gateways_trust_only_the_balancer_for_client_addresses(services, compose, envoy):
    import ipaddress

    cfg = load_config(_config_path(services["gateway"]), env={})
    edge = _service_by_image(services, "envoyproxy/envoy:")
    address = services[edge]["networks"]["default"]["ipv4_address"]
    assert cfg.limits.trusted_proxies == [address]
    (subnet,) = [c["subnet"] for c in compose["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    (listener,) = envoy["static_resources"]["listeners"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["use_remote_address"] is True and hcm.get("xff_num_trusted_hops", 0) == 0


# -- observability: collector, Jaeger, Prometheus, Grafana -------------------------------

OBS = DEPLOY / "observability"
DASHBOARD_DIR = OBS / "grafana" / "dashboards"

# What the Longtail processes export, as Prometheus sees it (OTel -> Prometheus naming):
# family -> (type, labels). The dashboard may use nothing else, so renaming a metric or a
# label on either side fails here; test_exported_metric_names_match_the_code ties this
# list to the instruments the code actually declares.
EXPORTED = {
    # FastAPI instrumentation, stable HTTP semconv (telemetry.setup opts in).
    "http_server_request_duration_seconds": ("histogram", {"http_route", "http_request_method", "http_response_status_code"}),
    "rpc_server_duration_seconds": ("histogram", {"rpc_method", "rpc_grpc_status_code"}),
    "longtail_topic_lag": ("gauge", {"topic", "group"}),
    "longtail_consumer_group_members": ("gauge", {"group"}),
    "longtail_dead_lettered_messages": ("counter", {"topic", "group"}),
    "longtail_transcode_seconds_per_video_minute": ("histogram", {"rendition", "codec"}),
    "longtail_transcode_step_seconds": ("histogram", {"step"}),
    "longtail_placement_decisions": ("counter", {"region", "served_from", "source"}),
    "longtail_cdn_share": ("gauge", {"region"}),
    "longtail_upload_to_ready_seconds": ("histogram", set()),
}
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series


def _sample_names(family: str, kind: str) -> set[str]:
    return {
        "histogram": {f"{family}_bucket", f"{family}_sum", f"{family}_count"},
        "counter": {f"{family}_total"},
        "gauge": {family},
    }[kind]


ALLOWED = {name: family for family, (kind, _) in EXPORTED.items() for name in _sample_names(family, kind)}

_GROUPING = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression refers to."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # label values and $variables are not names
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", e):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body))
    e = re.sub(r"\{[^}]*\}", " ", e)
    for body in re.findall(_GROUPING, e):
        labels |= {x.strip() for x in body.split(",") if x.strip()}
    e = re.sub(_GROUPING, " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range selectors, $__rate_interval
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", e):
        if m.group(0) in _PROMQL_KEYWORDS or e[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        names.add(m.group(0))
    return names, labels


def _service_by_image(services: dict, prefix: str) -> str:
    matches = [name for name, svc in services.items() if svc.get("image", "").startswith(prefix)]
    assert len(matches) == 1, f"expected one service running {prefix}, found {matches}"
    return matches[0]


def _host_path(service: dict, container_path: str) -> pathlib.Path:
    """The host file behind `container_path` through the service's bind mounts."""
    for volume in service.get("volumes", []):
        host, target = volume.split(":")[:2]
        if host.startswith(".") and (container_path == target or container_path.startswith(target.rstrip("/") + "/")):
            return (DEPLOY / host / container_path[len(target):].lstrip("/")).resolve()
    raise AssertionError(f"{container_path} is not bind-mounted from the repo")


def _flag(service: dict, flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in service.get("command", []) if arg.startswith(flag + "=")]
    assert len(values) == 1, f"command must set {flag}= once: {service.get('command')}"
    return values[0]


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="module")
def collector(services) -> tuple[str, dict]:
    name = _service_by_image(services, "otel/opentelemetry-collector-contrib:")
    path = _host_path(services[name], _flag(services[name], "--config"))
    return name, yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def prometheus(services) -> dict:
    name = _service_by_image(services, "prom/prometheus:")
    return yaml.safe_load(_host_path(services[name], _flag(services[name], "--config.file")).read_text())


@pytest.fixture(scope="module")
def dashboards() -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))]
    assert found, "no dashboard JSON"
    return found


def _panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def _longtail_services(services: dict) -> dict:
    # Long-running Longtail containers; the one-shot `migrate` exits before any scrape.
    return {name: svc for name, svc in services.items() if "build" in svc and svc.get("restart") != "no"}


def test_collector_pipelines_use_defined_components_and_reach_jaeger(services, collector):
    _name, cfg = collector
    # Component types the pinned contrib image knows; a typo would stop the collector.
    known = {"receivers": {"otlp"}, "processors": {"batch", "memory_limiter"},
             "exporters": {"otlp_grpc", "otlp", "otlp_http", "otlphttp", "debug"}}
    pipelines = cfg["service"]["pipelines"]
    assert "traces" in pipelines
    for pipeline, spec in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in spec.get(kind, []):
                assert component in (cfg.get(kind) or {}), f"{pipeline}: {kind[:-1]} {component} is not defined"
                assert component.split("/")[0] in known[kind], f"{pipeline}: unknown {kind[:-1]} type {component}"
        assert spec.get("receivers") and spec.get("exporters"), pipeline
    assert "batch" in pipelines["traces"].get("processors", [])

    for proto, port in (("grpc", 4317), ("http", 4318)):
        host, bound = _host_port(cfg["receivers"]["otlp"]["protocols"][proto]["endpoint"])
        assert (host, bound) == ("0.0.0.0", port), f"otlp {proto} must listen on all interfaces (other containers send)"

    jaeger = _service_by_image(services, "jaegertracing/jaeger:")
    reached = []
    for exporter in pipelines["traces"]["exporters"]:
        kind, conf = exporter.split("/")[0], cfg["exporters"][exporter] or {}
        if kind in ("otlp_grpc", "otlp"):
            host, port = _host_port(conf["endpoint"])
            if (host, port) == (jaeger, 4317):  # Jaeger v2's OTLP/gRPC receiver
                assert conf.get("tls", {}).get("insecure") is True, "Jaeger's OTLP port has no TLS here"
                reached.append(exporter)
        elif kind in ("otlp_http", "otlphttp") and conf["endpoint"].rstrip("/") == f"http://{jaeger}:4318":
            reached.append(exporter)
    assert reached, "the traces pipeline must export to Jaeger's OTLP endpoint"
    assert jaeger in services[_name].get("depends_on", {})


def test_longtail_telemetry_points_at_the_collector(services, collector):
    name, cfg = collector
    config_path = {_config_path(svc) for svc in _longtail_services(services).values()}.pop()
    tel = load_config(config_path, env={}).telemetry
    url = urllib.parse.urlsplit(tel.otlp_endpoint)
    http_port = _host_port(cfg["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1]
    assert (url.scheme, url.hostname, url.port) == ("http", name, http_port), tel.otlp_endpoint
    assert url.path in ("", "/"), "the code appends /v1/traces itself"
    assert tel.tracing is True and tel.local_traces is False
    assert tel.prometheus_port > 0, "Prometheus needs a fixed port, not an ephemeral one"


def test_prometheus_scrapes_every_longtail_service(services, collector, prometheus):
    targets = set()
    for job in prometheus["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", job["job_name"]
        for static in job.get("static_configs", []):
            targets |= set(static["targets"])
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "Docker's DNS serves A records; SRV needs no port"
            targets |= {f"{n}:{dns['port']}" for n in dns["names"]}
    longtail = _longtail_services(services)
    assert {"gateway", "metadata", "upload", "transcoder", "placement", "search", "webhook"} <= set(longtail)
    for name, svc in longtail.items():
        # The port this container actually serves: its config plus its env overrides.
        port = load_config(_config_path(svc), env=svc.get("environment", {})).telemetry.prometheus_port
        assert port > 0 and f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
    for target in targets:
        host, _port = _host_port(target)
        assert host == "localhost" or host in services, f"scrape target {target} is no compose service"
    reader = collector[1]["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert f"{collector[0]}:{reader['port']}" in targets and reader["host"] == "0.0.0.0"


def test_grafana_provisioning_and_mounts_exist(services, dashboards):
    grafana = services[_service_by_image(services, "grafana/grafana:")]
    provisioning = _host_path(grafana, "/etc/grafana/provisioning")
    datasource_files = sorted((provisioning / "datasources").glob("*.yaml"))
    provider_files = sorted((provisioning / "dashboards").glob("*.yaml"))
    assert datasource_files and provider_files

    expected = {"prometheus": (_service_by_image(services, "prom/prometheus:"), 9090),
                "jaeger": (_service_by_image(services, "jaegertracing/jaeger:"), 16686)}
    uids = {}
    for path in datasource_files:
        for ds in yaml.safe_load(path.read_text())["datasources"]:
            url = urllib.parse.urlsplit(ds["url"])
            assert (url.hostname, url.port) == expected[ds["type"]], f"{ds['name']}: {ds['url']}"
            uids[ds["uid"]] = ds["type"]
    assert set(uids.values()) == {"prometheus", "jaeger"}

    for path in provider_files:
        for provider in yaml.safe_load(path.read_text())["providers"]:
            folder = _host_path(grafana, provider["options"]["path"])
            assert folder.is_dir() and list(folder.glob("*.json")), f"provider {provider['name']}: {folder}"
            assert folder == DASHBOARD_DIR.resolve()
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home and _host_path(grafana, home).is_file()

    for dashboard in dashboards:
        refs = [v["datasource"] for v in dashboard["templating"]["list"]]
        for panel in _panels(dashboard):
            if panel["type"] != "row":
                refs += [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        for ref in refs:
            assert uids.get(ref["uid"]) == ref["type"], f"{dashboard['title']}: unknown datasource {ref}"
        # The dashboard's way into Jaeger: a traces panel and an Explore link.
        assert any(p.get("datasource", {}).get("type") == "jaeger" for p in _panels(dashboard))
        explore = [urllib.parse.unquote(link["url"]) for link in dashboard.get("links", []) if "/explore" in link["url"]]
        assert any('"datasource":"jaeger"' in url for url in explore)


def test_promql_names_sees_metric_and_label_names():
    # The extractor the dashboard test relies on must really find names (or that test passes vacuously).
    names, labels = promql_names(
        'histogram_quantile(0.95, sum by (le, http_route) (rate(foo_seconds_bucket{rpc_method=~"$m", a!="x"}[$__rate_interval])))'
        ' / on (job) group_left bar_total')
    assert names == {"foo_seconds_bucket", "bar_total"}
    assert labels == {"le", "http_route", "rpc_method", "a", "job"}


def test_dashboard_queries_use_only_exported_metrics(dashboards):
    used: set[str] = set()
    for dashboard in dashboards:
        queries = []
        for var in dashboard["templating"]["list"]:
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", q)
            assert m, f"variable {var['name']}: {q}"
            queries.append((f"variable {var['name']}", m.group(1), {m.group(2)}))
        for panel in _panels(dashboard):
            if panel["type"] == "row" or panel["datasource"]["type"] != "prometheus":
                continue
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                names, labels = promql_names(target["expr"])
                assert names, f"{panel['title']}: no metric in {target['expr']}"
                for name in names:
                    queries.append((panel["title"], name, labels))
                # A label is fine if any metric of the expression carries it.
                known = set().union(*(EXPORTED.get(ALLOWED.get(n), ("", set()))[1] for n in names)) | SCRAPE_LABELS | {"le"}
                assert labels <= known, f"{panel['title']}: unknown labels {labels - known}"
        for where, name, labels in queries:
            assert name in ALLOWED, f"{where}: {name} is not an exported metric"
            used.add(ALLOWED[name])
            assert labels <= EXPORTED[ALLOWED[name]][1] | SCRAPE_LABELS | {"le"}, f"{where}: {labels}"
    assert used == set(EXPORTED), f"metrics with no panel: {set(EXPORTED) - used}"


def test_exported_metric_names_match_the_code(monkeypatch):
    """Drives the instruments the services declare through a private Prometheus reader, so a
    renamed metric, unit or label in the code fails here instead of leaving a panel empty."""
    from types import SimpleNamespace

    import grpc
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry

    from longtail.metadata.v1 import video_pb2
    from longtail_common import consumer, grpc_server, telemetry
    from placement_svc import metrics as placement_metrics
    from transcoder_svc import metrics as transcoder_metrics

    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry)])
    monkeypatch.setattr(telemetry, "meter", lambda name="longtail": provider.get_meter(name))
    # Instruments are created once per process; start from none so ours are the ones used.
    monkeypatch.setattr(transcoder_metrics, "_instruments", {})
    monkeypatch.setattr(placement_metrics, "_instruments", {})
    monkeypatch.setattr(consumer, "_dead_letter_counter", [])

    interceptor = grpc_server._MetricsInterceptor()
    handler = interceptor.intercept_service(
        lambda _details: grpc.unary_unary_rpc_method_handler(lambda request, context: b""),
        SimpleNamespace(method="/longtail.metadata.v1.MetadataService/GetVideo"))
    handler.unary_unary(b"", SimpleNamespace(code=lambda: grpc.StatusCode.NOT_FOUND))
    rung = SimpleNamespace(name="720p", width=1280, height=720, frame_rate=30.0)
    transcoder_metrics.record_encode_time(30.0, 60.0, [rung], ["h264"])
    with transcoder_metrics.step("probe"):
        pass
    placement_metrics.record_decisions([SimpleNamespace(region="eu-west", served_from=video_pb2.SERVED_FROM_CDN)], "new_video")
    summary = json.dumps({"date": "2024-01-01", "videos": 4, "on_cdn": {"eu-west": 1}}).encode()
    placement_metrics.register_cdn_share_gauge(SimpleNamespace(get_bytes=lambda bucket, key: summary))
    from longtail_common.lag_exporter import GroupLagExporter
    from longtail_common.ports import GroupLag, Message, PartitionLag

    lagging = GroupLag("transcoders", 0, (PartitionLag("transcode.requests", 0, 2, 5),))
    GroupLagExporter(SimpleNamespace(group_lag=lambda group, topics: lagging),
                     {"transcoders": ("transcode.requests",)}).refresh()

    consumer._dead_letter(SimpleNamespace(publish=lambda *args, **kwargs: None),
                          Message("transcode.requests", 0, 7, b"v1", b"{}"), "transcoders", "boom", 3)
    from longtail.events.v1 import events_pb2
    from placement_svc.server import ResultHandler

    processing = video_pb2.Video(id="v1", etag="e1", status=video_pb2.VIDEO_STATUS_PROCESSING)
    processing.create_time.GetCurrentTime()
    metadata = SimpleNamespace(GetVideo=lambda request, timeout: processing,
                               UpdateVideo=lambda request, timeout: request.video)
    from longtail_common.config import Config

    handler_cfg = Config()
    handler_cfg.platform.regions = ["US"]
    ResultHandler(handler_cfg, metadata,
                  SimpleNamespace(publish=lambda *args, **kwargs: None))(
        Message("transcode.results", 0, 1, b"v1", events_pb2.TranscodeResult(video_id="v1", success=True).SerializeToString()))

    exported: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        labels = {k for s in family.samples for k in s.labels if not k.startswith("otel_scope_") and k != "le"}
        exported[family.name] = (family.type, labels)
    provider.shutdown()
    from_code = {k: v for k, v in EXPORTED.items() if not k.startswith("http_server_")}  # FastAPI's, not ours
    assert exported == from_code
