"""deploy/k8s/ checked statically (no cluster here): every built-in object validates against
the Kubernetes schemas kubernetes-validate ships (strict: an unknown field fails), and the
objects agree with each other and with the code: Services and config addresses, probes,
secrets and certificates, the transcoder autoscaler's metric, replicas and disruption
budgets. `make deploy-check` runs the same schema validation from the command line."""
from __future__ import annotations

import copy
import importlib.util
import pathlib
import urllib.parse

import pytest
import yaml

from longtail_common.config import load_config
from longtail_common.ports import CONSUMER_GROUPS, DEFAULT_TOPICS, MEDIA_BUCKET, TOPIC_TRANSCODE_REQUESTS

K8S = pathlib.Path(__file__).resolve().parents[1] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.34"  # the oldest minor the manifests promise to fit (also in the Makefile)
NAMESPACE = "longtail"
GRPC_TIERS = {"metadata": 50051, "upload": 50052, "transcoder": 50053, "placement": 50054, "search": 50055, "webhook": 50056}
REPLICATED = ("gateway", "metadata", "upload", "transcoder", "placement")
CRD_GROUPS = ("cert-manager.io/",)  # kinds the schemas lack; checked by hand below


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert found
    return found


@pytest.fixture(scope="module")
def objects(docs) -> dict[tuple[str, str], dict]:
    by_key = {}
    for _file, doc in docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in by_key, f"{key} defined twice"
        by_key[key] = doc
    return by_key


@pytest.fixture(scope="module")
def cfg(objects, tmp_path_factory):
    path = tmp_path_factory.mktemp("k8s") / "longtail.toml"
    path.write_text(objects[("ConfigMap", "longtail-config")]["data"]["longtail.toml"])
    return load_config(path, env={})


def _workload(objects, name) -> dict:
    return objects.get(("Deployment", name)) or objects[("StatefulSet", name)]


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _pod_specs(objects):
    """(object name, pod spec) of every workload, CronJobs' included."""
    for (kind, name), doc in objects.items():
        if kind in ("Deployment", "StatefulSet", "Job"):
            yield name, doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_every_builtin_object_matches_the_kubernetes_schema_strictly(docs):
    import kubernetes_validate

    checked = 0
    for file, doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 20
    # The validator really validates: a misspelt field and a wrong type both fail.
    deployment = next(doc for _f, doc in docs if doc["kind"] == "Deployment")
    for breakage in ({"replicass": 2}, {"replicas": "two"}):
        broken = copy.deepcopy(deployment)
        broken["spec"].update(breakage)
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_objects_live_in_the_namespace_and_are_labelled(docs):
    for file, doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            assert meta["name"] == NAMESPACE
            continue
        assert meta.get("namespace") == NAMESPACE, f"{file}: {doc['kind']}/{meta['name']}"
    assert docs[0][1]["kind"] == "Namespace", "the namespace must come first (kubectl applies files in name order)"


def test_replicated_tiers_and_their_disruption_budgets(objects):
    for name in REPLICATED:
        deployment = objects[("Deployment", name)]
        assert deployment["spec"]["replicas"] >= 2, name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        budget = objects[("PodDisruptionBudget", name)]["spec"]
        assert budget["selector"]["matchLabels"].items() <= labels.items(), name
        assert budget.get("maxUnavailable") == 1, name
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["labelSelector"]["matchLabels"].items() <= labels.items()
    # search: one pod with its index on a volume that survives rescheduling, on purpose.
    search = objects[("StatefulSet", "search")]
    assert search["spec"]["replicas"] == 1 and search["spec"]["serviceName"] == "search"
    (claim,) = search["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in _container(search)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == _env(_container(search))["LONGTAIL_DATA_DIR"]


def test_grpc_tiers_have_headless_services_the_config_dials(objects, cfg):
    for name, port in GRPC_TIERS.items():
        service = objects[("Service", name)]["spec"]
        # Headless: the name resolves to every pod, so clients balance over the replicas.
        assert service["clusterIP"] == "None", name
        host, dialled = getattr(cfg.services, name).rsplit(":", 1)
        assert (host, int(dialled)) == (name, port), f"services.{name} must dial the headless Service"
        workload = _workload(objects, name)
        assert service["selector"].items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        container = _container(workload)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for entry in service["ports"]:
            assert ports[entry["targetPort"]] == entry["port"], f"{name}: {entry}"
        assert ports["grpc"] == port
        assert _env(container)[f"LONGTAIL_SERVICES__{name.upper()}"] == f"0.0.0.0:{port}"
        assert ports["metrics"] == cfg.telemetry.prometheus_port


def test_grpc_probes_ask_the_pods_own_server_over_the_mesh(objects):
    assert importlib.util.find_spec("longtail_common.probe") is not None
    for name, port in GRPC_TIERS.items():
        container = _container(_workload(objects, name))
        probe = ["python", "-m", "longtail_common.probe", name, f"127.0.0.1:{port}"]
        assert container["readinessProbe"]["exec"]["command"] == probe, name
        # Liveness and startup only need an answer: a pod waiting for Kafka is not restarted.
        assert container["livenessProbe"]["exec"]["command"] == probe + ["--live"], name
        assert container["startupProbe"]["exec"]["command"] == probe + ["--live"], name
        assert container["readinessProbe"]["timeoutSeconds"] > 3, "the probe's own deadline is 3 s"


def test_gateway_probes_service_and_ingress(objects, cfg):
    gateway = objects[("Deployment", "gateway")]
    container = _container(gateway)
    # Not /healthz: every gateway shares its dependencies, and Kubernetes has no panic mode,
    # so a search restart would empty the Service. A dependency's outage drains nothing.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "http"}, probe
    assert container["command"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    assert {"name": "http", "containerPort": 8080} in container["ports"]
    assert "LONGTAIL_PLAYBACK__SECRET" in _env(container), "every gateway signs with one secret"
    service = objects[("Service", "gateway")]["spec"]
    assert service.get("clusterIP") != "None"
    hpa = objects[("HorizontalPodAutoscaler", "gateway")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "gateway" and hpa["minReplicas"] >= 2
    assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a request"

    ingress = objects[("Ingress", "longtail")]["spec"]
    (rule,) = ingress["rules"]
    public = urllib.parse.urlsplit(cfg.s3.public_url)
    assert public.hostname == rule["host"] and public.scheme == "https" and rule["host"] in ingress["tls"][0]["hosts"]
    assert urllib.parse.urlsplit(cfg.platform.public_url)[:2] == ("https", rule["host"])
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths["/"] == {"name": "gateway", "port": {"name": "http"}}
    # Origin bytes: presigned URLs of the media bucket, on this host, go to the object store.
    from longtail_common.adapters.s3_objects import S3ObjectStore

    store = S3ObjectStore(cfg.s3)
    url = urllib.parse.urlsplit(store.presigned_get_url(MEDIA_BUCKET, "videos/v1/h264/720p/seg_00001.m4s", 600))
    assert (url.scheme, url.hostname) == ("https", rule["host"])
    prefix = f"/{store.bucket_name(MEDIA_BUCKET)}/"
    assert url.path.startswith(prefix)
    host, port = cfg.s3.endpoint.rsplit(":", 1)
    assert paths[prefix] == {"name": host, "port": {"number": int(port)}}


def test_transcoders_scale_on_their_topic_lag(objects):
    from tests.test_deploy import EXPORTED
    from transcoder_svc.worker import CONSUMER_GROUP

    hpa = objects[("HorizontalPodAutoscaler", "transcoder")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "transcoder"}
    (metric,) = hpa["metrics"]
    assert metric["type"] == "External"
    name, labels = metric["external"]["metric"]["name"], metric["external"]["metric"]["selector"]["matchLabels"]
    # The metric the code exports, for the group and topic the workers really consume.
    assert name in EXPORTED and set(labels) <= EXPORTED[name][1]
    assert labels == {"topic": TOPIC_TRANSCODE_REQUESTS, "group": CONSUMER_GROUP}
    assert TOPIC_TRANSCODE_REQUESTS in CONSUMER_GROUPS[CONSUMER_GROUP]
    # More workers than partitions would idle: a member reads only its own partitions.
    assert 2 <= hpa["minReplicas"] <= objects[("Deployment", "transcoder")]["spec"]["replicas"]
    assert hpa["maxReplicas"] <= DEFAULT_TOPICS[TOPIC_TRANSCODE_REQUESTS]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
    adapter = yaml.safe_load((K8S / "addons" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == name and name in rule["seriesQuery"] and rule["metricsQuery"].startswith("max by")


def test_config_loads_with_the_real_backends_and_the_mesh_on(cfg):
    assert (cfg.backends.metadata, cfg.backends.objects, cfg.backends.topics) == ("scylla", "s3", "kafka")
    assert cfg.mesh.tls is True and cfg.kafka.replication_factor >= 3
    assert cfg.s3.access_key == "" and cfg.s3.secret_key == "", "keys come from the Secret, not the ConfigMap"
    assert cfg.limits.trusted_proxies, "behind an Ingress, clients would otherwise share one rate limit"


def test_pods_get_config_secrets_and_their_own_certificate(objects):
    secret = objects[("Secret", "longtail-secrets")]
    keys = set(secret["stringData"])
    certificates = {doc["spec"]["secretName"]: doc for (kind, _n), doc in objects.items()
                    if kind == "Certificate" and not doc["spec"].get("isCA")}
    seen = 0
    for name, pod in _pod_specs(objects):
        (container,) = pod["containers"]
        env = _env(container)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        config_dir = str(pathlib.PurePosixPath(env["LONGTAIL_CONFIG"]).parent)
        assert volumes[mounts[config_dir]]["configMap"]["name"] == "longtail-config", name
        for var, ref in env.items():
            if isinstance(ref, dict):
                assert ref["secretKeyRef"]["name"] == "longtail-secrets" and ref["secretKeyRef"]["key"] in keys, f"{name}: {var}"
        # The pod's mesh identity is the certificate it mounts, at the files the env names.
        tls_dir = str(pathlib.PurePosixPath(env["LONGTAIL_MESH__CERT_FILE"]).parent)
        cert = certificates[volumes[mounts[tls_dir]]["secret"]["secretName"]]
        assert cert["spec"]["commonName"] == env["LONGTAIL_MESH__IDENTITY"], name
        assert {env[f"LONGTAIL_MESH__{k}_FILE"].rsplit("/", 1)[1] for k in ("CA", "CERT", "KEY")} == {"ca.crt", "tls.crt", "tls.key"}
        # Hardened: not root, no writes outside its volumes.
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {env["LONGTAIL_DATA_DIR"], "/tmp"} <= set(mounts), name
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        command = container["command"]
        if command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, f"{name}: {command}"
        else:
            assert command[0] == "longtail" and command[1:] in (["metadata", "migrate"], ["placement", "run"]), command
        seen += 1
    assert seen == len(GRPC_TIERS) + 3  # + gateway, migrate, the daily placement job


def test_mesh_certificates_name_their_services_and_chain_to_one_ca(objects):
    issuers = {name: doc for (kind, name), doc in objects.items() if kind == "Issuer"}
    certificates = {name: doc["spec"] for (kind, name), doc in objects.items() if kind == "Certificate"}
    (ca,) = [c for c in certificates.values() if c.get("isCA")]
    assert issuers[ca["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}
    (mesh_issuer,) = [n for n, doc in issuers.items() if doc["spec"].get("ca", {}).get("secretName") == ca["secretName"]]
    for name, port in {**GRPC_TIERS, "gateway": 8080, "admin": 0}.items():
        spec = certificates[f"mesh-{name}"]
        assert spec["issuerRef"] == {"name": mesh_issuer, "kind": "Issuer"}
        # Clients check the DNS name `metadata` etc., whatever address they dial.
        assert spec["commonName"] == name and name in spec["dnsNames"]
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["algorithm"] == "ECDSA"
