"""Which receiver URLs webhooks may be sent to: http(s) only, and never to an address that
is not global (private, loopback, link-local, shared, reserved, multicast: an SSRF into the
platform's own network) unless `webhooks.allow_networks` covers it.

The address is checked where the connection is made (`GuardedBackend`): the name is
resolved once, each address checked, and the socket opened to a checked address, so a
name that resolves to a public address at registration and to 127.0.0.1 later (DNS
rebinding) still reaches nothing inside. Redirects are not followed.
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import urllib.parse

import certifi
import httpcore
import httpx

MAX_URL_CHARS = 2048
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """A receiver URL or address webhooks may not be sent to."""


def parse_networks(cidrs: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


def address_allowed(address: Address, allow: tuple[Network, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address.version == net.version and address in net for net in allow):
        return True
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve: {exc}") from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))


def allowed_addresses(host: str, port: int, allow: tuple[Network, ...]) -> list[Address]:
    """The addresses of `host` a webhook may connect to; TargetRefused if none."""
    addresses = resolve(host, port)
    usable = [a for a in addresses if address_allowed(a, allow)]
    if not usable:
        raise TargetRefused(f"{host} resolves to {', '.join(map(str, addresses))}: "
                            "not a public address (webhooks.allow_networks)")
    return usable


def check_url(url: str, allow: tuple[Network, ...], resolve_host: bool = True) -> str:
    """The URL if webhooks may be sent to it; TargetRefused saying why not."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise TargetRefused(f"url must be 1-{MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise TargetRefused("url must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"url is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("url must be http or https")
    if not parts.hostname:
        raise TargetRefused("url has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not carry credentials (they would be shown in every listing)")
    if parts.fragment:
        raise TargetRefused("url must not have a fragment")
    if resolve_host:
        allowed_addresses(parts.hostname, port, allow)
    return url


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `address_allowed` accepts."""

    def __init__(self, allow: tuple[Network, ...]):
        self.allow = allow

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = allowed_addresses(host, port, self.allow)
        except TargetRefused as exc:
            raise httpcore.ConnectError(str(exc)) from None
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error  # type: ignore[misc]


class GuardedTransport(httpx.HTTPTransport):
    """An httpx transport over GuardedBackend (TLS still checks the URL's host name)."""

    def __init__(self, allow: tuple[Network, ...]):
        super().__init__(retries=0)
        # httpx builds its pool with the default backend; this one differs only in that.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()), max_connections=100,
            max_keepalive_connections=20, keepalive_expiry=5.0, network_backend=GuardedBackend(allow))
