"""S3Proxy with its filesystem blob store: it speaks the S3 API minio uses."""
from __future__ import annotations

import os
import pathlib
import time
from dataclasses import dataclass

from longtail_cli.launcher import free_port  # one port allocator for the servers and the services
from longtail_common.config import S3Config
from longtail_testservers.errors import TestServerError
from longtail_testservers.jars import resolve_jars
from longtail_testservers.process import HOST, JavaServer, java_base, retry_on_bind

# From process spawn to a real answer. Generous: on a loaded 2-core machine the three JVMs start at once.
S3PROXY_DEADLINE_S = 90.0
S3_ACCESS_KEY = "longtail"
S3_SECRET_KEY = "longtail-secret-key"


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
# S3Proxy for tests, written by longtail_testservers/s3proxy.py
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
        return java_base("64m", "256m", ["-XX:+UseSerialGC",
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

    return retry_on_bind(once)
