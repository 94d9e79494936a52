"""Keycloak, the OpenID Connect provider the OIDC sign-in is tested against: its Quarkus
distribution from Maven Central, run in dev mode on loopback with the `longtail` realm of
deploy/keycloak/longtail-realm.json imported (a confidential client, test users, an admin role).

Keycloak needs Java 21+ (found by `jars.java_at_least`). Two slow first steps are done once
and kept in the jar cache: the "augmentation" of the distribution (a Quarkus build, keyed by
the build options) and a seed database (a fresh H2 schema with the realm imported, keyed by
the realm file). Each server then gets its own home directory (a copy of the seed database,
the import folder, its log); the distribution is shared read-only.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass

from longtail_cli.launcher import free_port  # one port allocator for the servers and the services
from longtail_testservers.errors import JavaUnavailableError, TestServerError
from longtail_testservers.jars import (REPO_ROOT, cache_dir, file_lock, jars_cached, java_at_least,
                                       resolve_jars, server_versions)
from longtail_testservers.process import HOST, JavaServer, retry_on_bind

# From spawn to a realm that answers: a fresh H2 schema plus the import took 97 s on 2 busy cores.
KEYCLOAK_DEADLINE_S = 360.0
AUGMENT_TIMEOUT_S = 900.0
MISSING_JAVA21_PREFIX = "Keycloak (the OIDC test provider) needs Java 21+ and Maven: "
REALM_FILE = REPO_ROOT / "deploy" / "keycloak" / "longtail-realm.json"
REALM = "longtail"
CLIENT_ID = "longtail-gateway"
# The master realm's bootstrap admin, for the admin REST API in tests. TEST credentials only.
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-test-password"

# Build-time options: the cached augmentation is valid for exactly these.
_BUILD_OPTIONS = ["--health-enabled=true"]
# What bin/kc.sh passes to the JVM (Keycloak 26.7), minus its debug and container branches.
_KC_JVM = """
-Xms64m -Xmx512m -XX:MetaspaceSize=96M -XX:MaxMetaspaceSize=256m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
-Dfile.encoding=UTF-8 -Dstdout.encoding=UTF-8 -Dstderr.encoding=UTF-8 -Djava.security.egd=file:/dev/urandom
--add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
--add-opens=java.base/java.security=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED
--enable-native-access=ALL-UNNAMED -Duser.language=en -Duser.country=US
-Djava.util.concurrent.ForkJoinPool.common.threadFactory=io.quarkus.bootstrap.forkjoin.QuarkusForkJoinWorkerThreadFactory
-Djava.util.logging.manager=org.jboss.logmanager.LogManager -Dpicocli.disable.closures=true
-Dquarkus-log-max-startup-records=10000
""".split()
# kc.sh relaunches with this after an augmentation; we pass it once ours is cached.
_CONFIG_BUILT = "-Dkc.config.built=true"
_REAUGMENTED_EXIT = 10  # Keycloak's "augmented, relaunch me" exit code


@dataclass(frozen=True)
class RealmUser:
    """A user of the test realm (TEST passwords, from the realm file)."""

    username: str
    password: str
    email: str
    roles: tuple[str, ...]


def load_realm() -> dict:
    return json.loads(REALM_FILE.read_text())


def client_secret(realm: dict | None = None) -> str:
    """The `longtail-gateway` client's secret in the realm file: a TEST secret only."""
    realm = realm or load_realm()
    return next(c["secret"] for c in realm["clients"] if c["clientId"] == CLIENT_ID)


def realm_users(realm: dict | None = None) -> dict[str, RealmUser]:
    realm = realm or load_realm()
    return {u["username"]: RealmUser(u["username"], u["credentials"][0]["value"], u["email"],
                                    tuple(r for r in u.get("realmRoles", ()) if not r.startswith("default-roles")))
            for u in realm["users"]}


def keycloak_available() -> tuple[bool, str]:
    """(True, description) when Keycloak can be started here, else (False, reason)."""
    if not REALM_FILE.exists():
        return False, f"{REALM_FILE} is missing (run from a source checkout of Longtail)"
    java, how = java_at_least(21)
    if not java:
        return False, how
    if not jars_cached(["keycloak"]) and not shutil.which("mvn"):
        return False, f"{how}, but no `mvn` on PATH to fetch the Keycloak distribution into {cache_dir()}"
    return True, how


def _java21() -> str:
    java, how = java_at_least(21)
    if not java:
        raise JavaUnavailableError(MISSING_JAVA21_PREFIX + how)
    return java


def _jvm_argv(java: str, dist: pathlib.Path, home: pathlib.Path, *system_properties: str) -> list[str]:
    return [java, *_KC_JVM, *system_properties, f"-Dkc.home.dir={home}",
            f"-Djboss.server.config.dir={home / 'conf'}",
            "-cp", str(dist / "lib" / "quarkus-run.jar"), "io.quarkus.bootstrap.runner.QuarkusEntryPoint"]


def _make_home(home: pathlib.Path) -> None:
    """A Keycloak home of our own: data (H2, the realm to import), conf, providers, themes."""
    for sub in ("data/import", "conf", "providers", "themes"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REALM_FILE, home / "data" / "import" / REALM_FILE.name)


def distribution() -> tuple[pathlib.Path, pathlib.Path]:
    """The unpacked, augmented Keycloak distribution and the seed database folder, in the jar
    cache (fetched, built and seeded once)."""
    folder = resolve_jars(["keycloak"])["keycloak"]
    version = server_versions()["keycloak"]
    dist = folder / f"keycloak-{version}"
    marker = folder / ".augmented.json"
    key = hashlib.sha256(REALM_FILE.read_bytes() + json.dumps(_BUILD_OPTIONS).encode()).hexdigest()[:10]
    seed = folder / f"seed-{key}"
    with file_lock(folder / ".lock"):
        if not (dist / "lib" / "quarkus-run.jar").exists():
            _unpack(folder, dist)
        built = json.loads(marker.read_text()) if marker.exists() else {}
        if built.get("options") != _BUILD_OPTIONS:
            seconds = _augment(dist, folder / "augment.log")
            marker.write_text(json.dumps({"options": _BUILD_OPTIONS, "augment_s": seconds}, indent=1))
            for old in folder.glob("seed-*"):  # made by another build
                shutil.rmtree(old, ignore_errors=True)
        if not (seed / ".complete").exists():
            _make_seed(dist, seed)
    return dist, seed


def _make_seed(dist: pathlib.Path, seed: pathlib.Path) -> None:
    """Start Keycloak once on an empty database, import the realm, stop it, keep its H2 files:
    later servers copy them and skip the schema creation and the import (a third of a start)."""
    scratch = pathlib.Path(tempfile.mkdtemp(dir=seed.parent, prefix=".seeding-"))
    try:
        server = KeycloakServer(name="keycloak-seed", dir=scratch, port=free_port(), management_port=free_port())
        _make_home(scratch)
        server.launch(dist)
        server.stop()
        shutil.rmtree(seed, ignore_errors=True)
        shutil.copytree(scratch / "data" / "h2", seed / "h2", ignore=shutil.ignore_patterns("*.trace.db"))
        (seed / ".complete").write_text(json.dumps({"seeded_s": server.startup_s}))
        shutil.copyfile(server.log_file, seed / "seed.log")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(folder: pathlib.Path, dist: pathlib.Path) -> None:
    zips = sorted(folder.glob("keycloak-quarkus-dist-*.zip"))
    if not zips:
        raise TestServerError(f"no keycloak-quarkus-dist zip in {folder}")
    staging = pathlib.Path(tempfile.mkdtemp(dir=folder, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(zips[-1]) as archive:
            archive.extractall(staging)
        shutil.rmtree(dist, ignore_errors=True)
        os.replace(staging / dist.name, dist)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (folder / ".augmented.json").unlink(missing_ok=True)


def _augment(dist: pathlib.Path, log_path: pathlib.Path) -> float:
    """Run Keycloak's Quarkus build for our options (start-dev always rebuilds, then exits 10)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kc-augment-") as scratch, open(log_path, "wb") as logfh:
        home = pathlib.Path(scratch)
        _make_home(home)
        argv = _jvm_argv(_java21(), dist, home) + ["start-dev", *_BUILD_OPTIONS, f"--http-host={HOST}",
                                                   f"--http-port={free_port()}",
                                                   f"--http-management-port={free_port()}"]
        try:
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT,
                                 timeout=AUGMENT_TIMEOUT_S, cwd=home)
        except subprocess.TimeoutExpired as exc:
            raise TestServerError(f"Keycloak's build did not finish within {AUGMENT_TIMEOUT_S:.0f}s "
                                  f"(log {log_path})") from exc
    if out.returncode != _REAUGMENTED_EXIT:
        raise TestServerError(f"Keycloak's build exited with {out.returncode}, not {_REAUGMENTED_EXIT} "
                              f"(log {log_path}):\n{log_path.read_text(errors='replace')[-4000:]}")
    return round(time.monotonic() - started, 1)


@dataclass
class KeycloakServer(JavaServer):
    host: str = HOST
    port: int = 0
    management_port: int = 0
    realm: str = REALM
    client_id: str = CLIENT_ID
    client_secret: str = ""
    admin_user: str = ADMIN_USER
    admin_password: str = ADMIN_PASSWORD

    kind = "keycloak"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The realm's issuer URL (fixed by --hostname, whatever Host a client sends)."""
        return f"{self.base_url}/realms/{self.realm}"

    @property
    def users(self) -> dict[str, RealmUser]:
        return realm_users()

    def command(self, dist: pathlib.Path) -> list[str]:
        return _jvm_argv(_java21(), dist, self.dir, _CONFIG_BUILT) + [
            "start-dev", *_BUILD_OPTIONS, f"--http-host={self.host}", f"--http-port={self.port}",
            f"--http-management-port={self.management_port}", f"--hostname={self.base_url}", "--import-realm"]

    def check(self) -> None:
        import httpx

        health = httpx.get(f"http://{self.host}:{self.management_port}/health/ready", timeout=5)
        if health.status_code != 200:
            raise TestServerError(f"health/ready answered {health.status_code}")
        httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).raise_for_status()

    def launch(self, dist: pathlib.Path, deadline_s: float = KEYCLOAK_DEADLINE_S) -> None:
        started = time.monotonic()
        env = {"KC_BOOTSTRAP_ADMIN_USERNAME": self.admin_user, "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password}
        self.spawn(self.command(dist), env=env)
        try:
            self.wait_ready(self.check, deadline_s, self.port)
        except TestServerError as exc:
            exc.server = self
            raise
        self.startup_s = round(time.monotonic() - started, 2)


def start_keycloak(dir: str | os.PathLike, deadline_s: float = KEYCLOAK_DEADLINE_S) -> KeycloakServer:
    """Start Keycloak in dev mode under `dir` with the test realm; returns once the realm answers."""
    root = pathlib.Path(dir).resolve()
    dist, seed = distribution()

    def once() -> KeycloakServer:
        shutil.rmtree(root / "data", ignore_errors=True)  # a failed attempt's half-used database
        server = KeycloakServer(name="keycloak", dir=root, port=free_port(), management_port=free_port(),
                                client_secret=client_secret())
        _make_home(root)
        shutil.copytree(seed / "h2", root / "data" / "h2")
        server.launch(dist, deadline_s)
        return server

    return retry_on_bind(once)
