"""Mutual TLS for the service mesh: the single-machine CA with a certificate per service,
and the gRPC credentials that servers and clients build from a CA and a certificate.

Each service's certificate names the service (DNS name `metadata`, `upload`, ...): a
client verifies that name whatever address it dials, so a replica list or a load
balancer in between does not weaken the check. Keys are ECDSA P-256 (cheap handshakes).
"""
from __future__ import annotations

import datetime as dt
import os
import pathlib
import socket
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from longtail_common.config import Config

# The identities of one machine's platform: a certificate each ("admin" is the operator's:
# CLI jobs, the launcher's health probes, tests).
LOCAL_IDENTITIES = ("metadata", "upload", "placement", "search", "webhook", "transcoder", "gateway", "admin")
CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=397)
# A certificate closer than this to its end is issued again when the platform starts.
RENEW_BEFORE = dt.timedelta(days=30)


class MeshTLSError(RuntimeError):
    """The mesh's TLS files are missing or unusable."""


@dataclass(frozen=True)
class MeshIdentity:
    """What one process proves itself with (its certificate and key) and trusts (the CA)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        """A server that refuses any client without a certificate from the CA."""
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)], root_certificates=self.ca_pem,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca_pem, private_key=self.key_pem,
                                            certificate_chain=self.cert_pem)


def tls_dir_of(cfg: Config) -> pathlib.Path:
    """Where the CA and a certificate per service live (mesh.tls_dir, by default DATA_DIR/tls)."""
    return pathlib.Path(cfg.mesh.tls_dir) if cfg.mesh.tls_dir else cfg.data_path / "tls"


def identity_paths(cfg: Config) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(CA, certificate, key): single files where configured, else tls_dir's."""
    local, mesh = tls_dir_of(cfg), cfg.mesh
    return (pathlib.Path(mesh.ca_file) if mesh.ca_file else local / "ca.crt",
            pathlib.Path(mesh.cert_file) if mesh.cert_file else local / f"{mesh.identity}.crt",
            pathlib.Path(mesh.key_file) if mesh.key_file else local / f"{mesh.identity}.key")


def load_identity(cfg: Config) -> MeshIdentity | None:
    """This process's mesh identity; None when the mesh runs in plain text (mesh.tls = false)."""
    if not cfg.mesh.tls:
        return None
    paths = identity_paths(cfg)
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise MeshTLSError(f"mesh.tls is on but {', '.join(missing)} is missing: run `longtail certs`, "
                           "point mesh.ca_file/cert_file/key_file at your CA's files, or set mesh.tls = false")
    return MeshIdentity(*(path.read_bytes() for path in paths))


def ensure_local_ca(directory: pathlib.Path, identities=LOCAL_IDENTITIES) -> list[str]:
    """Makes sure `directory` holds a CA (ca.crt, ca.key) and a certificate signed by it for
    each identity (<name>.crt, <name>.key), keys readable by the owner only. What is there
    and valid is kept; a missing one, one near its end or one another CA signed is issued
    anew. Returns the identities issued."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_cert, ca_key = _ensure_ca(directory)
    issued = []
    for name in identities:
        if _leaf_is_valid(directory / f"{name}.crt", ca_cert):
            continue
        key = ec.generate_private_key(ec.SECP256R1())
        _write(directory / f"{name}.key", _key_pem(key), private=True)
        _write(directory / f"{name}.crt", _issue_leaf(name, key, ca_cert, ca_key).public_bytes(serialization.Encoding.PEM))
        issued.append(name)
    return issued


def _ensure_ca(directory: pathlib.Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.is_file() and not key_path.is_file():
        raise MeshTLSError(f"{cert_path} has no ca.key beside it: certificates of that CA are issued where its key is")
    if cert_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc - _now() > RENEW_BEFORE:
            return cert, serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Longtail mesh"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Longtail mesh CA ({socket.gethostname()})")])
    cert = (_builder(name, name, key.public_key(), CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue_leaf(name: str, key, ca_cert: x509.Certificate, ca_key) -> x509.Certificate:
    """A certificate for service `name`, good for serving and for calling (one identity both ways)."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Longtail mesh"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (_builder(subject, ca_cert.subject, key.public_key(), LEAF_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _builder(subject: x509.Name, issuer: x509.Name, public_key, validity: dt.timedelta) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))  # clocks a little behind still accept it
            .not_valid_after(now + validity)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _leaf_is_valid(cert_path: pathlib.Path, ca_cert: x509.Certificate) -> bool:
    if not (cert_path.is_file() and cert_path.with_suffix(".key").is_file()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):  # another CA's (an earlier one's)
        return False
    return cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: pathlib.Path, data: bytes, private: bool = False) -> None:
    """Atomically (a reader never sees half a file); a key is never readable by others, even briefly."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(staging, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
