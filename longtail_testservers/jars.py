"""Java, Maven and the jar cache: finds a Java 17+ (or 21+) and fetches each server's jars once.

Jars: `deploy/testservers/pom.xml` (one module per server) is resolved with
`mvn dependency:copy-dependencies` into `~/.cache/longtail/testservers/` (or
`$LONGTAIL_TESTSERVERS_CACHE`), once; later runs find the jars and skip Maven.
Servers with their own pom (`OWN_POM_NAMES`) are resolved the same way from that pom.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

from longtail_testservers.errors import MISSING_JAVA_PREFIX, JavaUnavailableError, TestServerError

log = logging.getLogger("longtail.testservers")

SERVER_NAMES = ("kafka", "cassandra", "s3proxy")  # the modules of deploy/testservers/pom.xml
# Not modules of that pom, whose bytes key the modules' caches: adding one refetches nothing.
OWN_POM_NAMES = ("keycloak",)
JAVA21_HOME_ENV = "LONGTAIL_JAVA21_HOME"
# Where JDKs are usually installed (Debian/Ubuntu, RHEL, Docker images, SDKMAN, macOS).
_JDK_GLOBS = ("/usr/lib/jvm/*", "/usr/java/*", "/opt/java/*", "/opt/*jdk*", "~/.sdkman/candidates/java/*",
              "/Library/Java/JavaVirtualMachines/*/Contents/Home")
CACHE_ENV = "LONGTAIL_TESTSERVERS_CACHE"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
POM_DIR = REPO_ROOT / "deploy" / "testservers"


def cache_dir() -> pathlib.Path:
    raw = os.environ.get(CACHE_ENV)
    path = pathlib.Path(raw).expanduser() if raw else pathlib.Path.home() / ".cache" / "longtail" / "testservers"
    return path.resolve()


def java_exe() -> str | None:
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


def java_at_least(major: int) -> tuple[str | None, str]:
    """(path of a java whose version is `major`+, how it was found) or (None, why none).

    `$LONGTAIL_JAVA21_HOME` wins when set; then the default java (LONGTAIL_JAVA, JAVA_HOME,
    PATH); then the newest JDK in the usual install folders, beside an older default.
    """
    pinned = os.environ.get(JAVA21_HOME_ENV)
    if pinned:
        java = os.path.join(pinned, "bin", "java")
        if not os.access(java, os.X_OK):
            return None, f"${JAVA21_HOME_ENV}={pinned} has no bin/java"
        version = _version_or_zero(java)
        if version < major:
            return None, f"${JAVA21_HOME_ENV}={pinned} is Java {version}, not {major}+"
        return java, f"Java {version} at {java} (${JAVA21_HOME_ENV})"
    default = java_exe()
    if default and _version_or_zero(default) >= major:
        return default, f"Java {_version_or_zero(default)} at {default} (the default java)"
    found = []
    for pattern in _JDK_GLOBS:
        for home in glob.glob(os.path.expanduser(pattern)):
            java = os.path.realpath(os.path.join(home, "bin", "java"))
            if os.access(java, os.X_OK) and java not in (f for _, f in found):
                found.append((_version_or_zero(java), java))
    best = max(found, default=(0, None))
    if best[0] >= major:
        return best[1], f"Java {best[0]} at {best[1]} (found in the usual JDK folders)"
    seen = ", ".join(f"Java {v} at {j}" for v, j in sorted(found)) or "none"
    return None, (f"no Java {major}+ (looked at ${JAVA21_HOME_ENV}, the default java and "
                  f"{', '.join(_JDK_GLOBS)}; found {seen}). Install one (e.g. `apt-get install "
                  f"openjdk-{major}-jdk-headless`) or set ${JAVA21_HOME_ENV} to its home")


def _version_or_zero(java: str) -> int:
    try:
        return java_major_version(java)
    except (OSError, subprocess.SubprocessError, TestServerError):
        return 0


def _poms() -> dict[str, pathlib.Path]:
    return {name: POM_DIR / name / "pom.xml" for name in SERVER_NAMES + OWN_POM_NAMES}


def server_versions() -> dict[str, str]:
    """{'kafka': '4.3.1', ...} as pinned in deploy/testservers/*/pom.xml."""
    versions = {}
    for name, pom in _poms().items():
        m = re.search(rf"<{name}\.version>([^<]+)<", pom.read_text())
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
    java = java_exe()
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
def file_lock(path: pathlib.Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_jars(names=SERVER_NAMES, timeout_s: float = 1200) -> dict[str, pathlib.Path]:
    """The jar folder of each server, fetching the missing ones with Maven (one run for the
    modules of deploy/testservers/pom.xml, one per own-pom server).

    Safe to call from several processes at once (a file lock serialises Maven).
    """
    dirs = {n: _jar_dir(n) for n in names}
    missing = [n for n in names if not (dirs[n] / ".complete").exists()]
    if not missing:
        return dirs
    cache = cache_dir()
    with file_lock(cache / ".lock"):
        missing = [n for n in names if not (dirs[n] / ".complete").exists()]
        if not missing:
            return dirs
        mvn = shutil.which("mvn")
        if not mvn:
            raise JavaUnavailableError(MISSING_JAVA_PREFIX + "no `mvn` on PATH to fetch the server jars")
        modules = [n for n in missing if n not in OWN_POM_NAMES]
        runs = ([(["-f", str(POM_DIR / "pom.xml"), "-pl", ",".join(modules)], modules)] if modules else [])
        runs += [(["-f", str(POM_DIR / n / "pom.xml")], [n]) for n in missing if n in OWN_POM_NAMES]
        for pom_args, group in runs:
            _fetch_group(mvn, pom_args, group, dirs, timeout_s)
    return dirs


def _fetch_group(mvn: str, pom_args: list[str], names: list[str], dirs: dict[str, pathlib.Path],
                 timeout_s: float) -> None:
    """One Maven run copying the runtime artifacts (jars, or a distribution zip) of `names`."""
    cache = cache_dir()
    staging = pathlib.Path(tempfile.mkdtemp(dir=cache, prefix=".staging-"))
    try:
        cmd = [mvn, "-B", "-q", "-Dstyle.color=never", *pom_args,
               "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
               f"-Dtestservers.out={staging}"]
        log.info("fetching jars for %s with Maven into %s", ", ".join(names), cache)
        started = time.monotonic()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                 stdin=subprocess.DEVNULL, cwd=POM_DIR)
        except subprocess.TimeoutExpired as exc:
            raise TestServerError(f"Maven did not finish fetching {names} within {timeout_s:.0f}s: "
                                  f"{' '.join(cmd)}") from exc
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-40:])
            raise TestServerError(f"Maven failed ({out.returncode}) fetching the {', '.join(names)} jars:\n"
                                  f"$ {' '.join(cmd)}\n{tail}")
        elapsed = time.monotonic() - started
        for n in names:
            got = staging / n
            jars = sorted(p.name for p in [*got.glob("*.jar"), *got.glob("*.zip")]) if got.is_dir() else []
            if not jars:
                raise TestServerError(f"Maven copied no jars for {n} into {got}")
            (got / ".complete").write_text(json.dumps(
                {"fetched_at": time.time(), "maven_seconds": round(elapsed, 1), "jars": jars}, indent=1))
            if dirs[n].exists():
                shutil.rmtree(dirs[n])
            os.replace(got, dirs[n])
        log.info("fetched jars for %s in %.1fs", ", ".join(names), elapsed)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
