"""Several full platform nodes on one machine, as a fleet of machines would run them, behind
HAProxy: for the node-loss test and benchmark.

Each node is a `Platform` (longtail_cli/launcher.py) with its own processes, ports and data
directory (search index, traces, metrics, launcher state): what one machine keeps for
itself. What a fleet shares, they share:

* the backends of `cfg` (one Kafka, one Cassandra keyspace, one S3 bucket prefix), the
  schema made once before any node starts (as compose's `migrate` job does);
* one mesh CA (`mesh.tls_dir`, as an operator's CA would be), the mesh key that signs
  principals (`auth.mesh_secret`) and the playback signing secret (`playback.secret`): a
  principal or a stream URL signed on one node passes on the other;
* every gRPC client dials every node's replica of a service: `services.<name>` is
  `ipv4:<node a's address>,<node b's address>` (round robin, client-side health checks,
  retries of idempotent calls), each process binding only its own (`services.listen`). So
  a gateway keeps working when the other node's metadata dies, and a call in flight to a
  dead replica is what fails.

HAProxy balances the gateways (one per node), health-checked on /healthz.
"""
from __future__ import annotations

import concurrent.futures
import copy
import pathlib
import secrets
import string
import time

from longtail_cli.launcher import GRPC_SERVICES, Platform, free_port
from longtail_common.config import Config
from longtail_common.mesh_tls import ensure_local_ca
from longtail_testservers.haproxy import HAProxy


def node_names(count: int) -> list[str]:
    return [f"node-{string.ascii_lowercase[i]}" for i in range(count)]


def prepare_backends(cfg: Config) -> None:
    """The schema and the topics, made once for the whole fleet."""
    from longtail_common.adapters import make_topic_bus
    from longtail_common.ports import DEFAULT_TOPICS

    if cfg.backends.metadata == "scylla":
        from longtail_common.adapters import scylla_metadata

        scylla_metadata.migrate(cfg.scylla)
    bus = make_topic_bus(cfg)
    try:
        bus.ensure_topics(DEFAULT_TOPICS)
    finally:
        bus.close()


class Fleet:
    """`nodes` platforms sharing `cfg`'s backends, behind HAProxy at `url`."""

    def __init__(self, cfg: Config, root: pathlib.Path, nodes: int = 2, transcoder_workers: int = 1):
        self.root = pathlib.Path(root)
        self.cfg = copy.deepcopy(cfg)
        self.cfg.auth.mesh_secret = self.cfg.auth.mesh_secret or secrets.token_hex(32)
        self.cfg.playback.secret = self.cfg.playback.secret or secrets.token_hex(32)
        if self.cfg.mesh.tls and not (self.cfg.mesh.tls_dir or self.cfg.mesh.cert_file):
            self.cfg.mesh.tls_dir = str(self.root / "mesh-ca")
        names = node_names(nodes)
        addresses = {node: {svc: f"127.0.0.1:{free_port()}" for svc in GRPC_SERVICES} for node in names}
        targets = {svc: "ipv4:" + ",".join(addresses[node][svc] for node in names) for svc in GRPC_SERVICES}
        self.nodes: dict[str, Platform] = {}
        for node in names:
            node_cfg = copy.deepcopy(self.cfg)
            node_cfg.data_dir = str(self.root / node)
            self.nodes[node] = Platform(node_cfg, gateway_port=free_port(), transcoder_workers=transcoder_workers,
                                        service_addresses=addresses[node], service_targets=targets)
        self.balancer = HAProxy(self.root / "haproxy", free_port(),
                                {node: f"127.0.0.1:{p.gateway_port}" for node, p in self.nodes.items()})
        self.killed: set[str] = set()
        self.timings: dict[str, float] = {}

    @property
    def url(self) -> str:
        return self.balancer.url

    def start(self, timeout_s: float = 180.0) -> None:
        """Backends prepared, nodes started side by side, then the balancer; `timings` says
        how long each step took."""
        began = time.monotonic()
        if self.cfg.mesh.tls and self.cfg.mesh.tls_dir:
            ensure_local_ca(pathlib.Path(self.cfg.mesh.tls_dir))
        prepare_backends(self.cfg)
        self.timings["backends_s"] = round(time.monotonic() - began, 1)
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            started = [pool.submit(node.start, timeout_s) for node in self.nodes.values()]
            errors = [f.exception() for f in started if f.exception() is not None]
        self.timings["nodes_s"] = round(time.monotonic() - began - self.timings["backends_s"], 1)
        if errors:
            self.stop()
            raise errors[0]
        try:
            self.balancer.start()
        except BaseException:
            self.stop()
            raise
        self.timings["total_s"] = round(time.monotonic() - began, 1)

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of node `name` at once (a lost machine); returns the pids."""
        self.killed.add(name)
        return self.nodes[name].kill_all()

    def stop(self) -> None:
        self.balancer.stop()
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes.values()))
