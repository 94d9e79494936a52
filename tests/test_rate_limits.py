"""Rate limits at the gateway (gateway/ratelimit.py): 429 with Retry-After once one address
is over its limit while another address goes on, one budget shared by several gateways
(two apps, and two gateway processes, on one DATA_DIR), client addresses from trusted
proxies only, and the 429 answer in the OpenAPI document.

The requests are ones the gateway answers without a backend (an anonymous write, 401; a
malformed query or body, 422), so no service runs: what is counted is the request,
whatever its answer.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pytest

from longtail_cli.launcher import free_port
from longtail_common.config import Config
from gateway.app import create_app
from gateway.ratelimit import BEACONS, READS, SIGN_IN, WRITES, category_of

CLIENT_A, CLIENT_B = "203.0.113.10", "203.0.113.11"  # documentation addresses (RFC 5737)
BAD_VIDEO = {"title": ""}
REFUSED = 401  # an anonymous write, answered before any backend call


def wait_listening(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def limited_config(tmp_path, **limits) -> Config:
    cfg = Config(data_dir=str(tmp_path / "lt"))
    cfg.mesh.tls = False  # no service runs: a route that opens a stub never calls it
    cfg.limits.writes_per_address = "3 per minute"
    for name, value in limits.items():
        setattr(cfg.limits, name, value)
    return cfg


def client_for(app, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                             base_url="http://gateway")


async def statuses(client: httpx.AsyncClient, n: int, method="POST", path="/v1/videos", **kwargs) -> list[int]:
    kwargs = kwargs or {"json": BAD_VIDEO}
    return [(await client.request(method, path, **kwargs)).status_code for _ in range(n)]


def test_over_the_limit_429_with_retry_after_and_other_addresses_unaffected(tmp_path):
    app = create_app(limited_config(tmp_path))

    async def run():
        async with client_for(app, CLIENT_A) as a, client_for(app, CLIENT_B) as b:
            assert await statuses(a, 3) == [REFUSED] * 3
            refused = await a.post("/v1/videos", json=BAD_VIDEO)
            assert await statuses(b, 3) == [REFUSED] * 3  # another address has its own budget
            assert (await a.get("/v1/videos")).status_code == 422  # reads are another limit
            return refused

    refused = asyncio.run(run())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit() and 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert CLIENT_A in error["message"] and "3 per minute" in error["message"]


def test_two_apps_on_one_data_dir_share_one_budget(tmp_path):
    cfg = limited_config(tmp_path, writes_per_address="4 per minute")
    first, second = create_app(cfg), create_app(cfg)

    async def run():
        async with client_for(first, CLIENT_A) as one, client_for(second, CLIENT_A) as other:
            return [(await c.post("/v1/videos", json=BAD_VIDEO)).status_code for c in (one, other) * 3]

    assert asyncio.run(run()) == [REFUSED] * 4 + [429] * 2


def test_two_gateway_processes_share_one_budget(tmp_path):
    """Two `python -m gateway` processes on one config, a client alternating between them
    (through a trusted proxy on loopback that names the client)."""
    cfg = limited_config(tmp_path, writes_per_address="4 per minute", trusted_proxies=["127.0.0.1/32"])
    ports = [free_port(), free_port()]
    env = dict(os.environ, **cfg.to_env())
    gateways = [subprocess.Popen([sys.executable, "-m", "gateway", "--port", str(port)], env=env)
                for port in ports]
    try:
        for port in ports:
            wait_listening(f"http://127.0.0.1:{port}/openapi.json")
        headers = {"X-Forwarded-For": CLIENT_A}
        answers = [httpx.post(f"http://127.0.0.1:{port}/v1/videos", json=BAD_VIDEO, headers=headers).status_code
                   for port in ports * 3]
        other = httpx.post(f"http://127.0.0.1:{ports[0]}/v1/videos", json=BAD_VIDEO,
                           headers={"X-Forwarded-For": CLIENT_B}).status_code
    finally:
        for gateway in gateways:
            gateway.terminate()
            gateway.wait(timeout=30)
    assert answers == [REFUSED] * 4 + [429] * 2
    assert other == REFUSED


def test_forwarded_for_only_from_trusted_proxies_and_strictly_parsed(tmp_path):
    proxy = "198.51.100.1"
    app = create_app(limited_config(tmp_path, trusted_proxies=["198.51.100.0/24"], writes_per_address="2 per minute"))

    async def run():
        async with client_for(app, proxy) as via_proxy, client_for(app, CLIENT_B) as direct:
            forwarded = {"X-Forwarded-For": f"{CLIENT_A}, 198.51.100.2"}  # a second trusted hop is skipped
            results = {
                "client A via the proxy": await statuses(via_proxy, 3, json=BAD_VIDEO, headers=forwarded),
                # Not a trusted peer: its X-Forwarded-For is ignored (the header cannot dodge the limit).
                "B spoofing": await statuses(direct, 3, json=BAD_VIDEO, headers={"X-Forwarded-For": "192.0.2.99"}),
            }
            bad = [await via_proxy.post("/v1/videos", json=BAD_VIDEO, headers={"X-Forwarded-For": value})
                   for value in ("203.0.113.\u00b2".encode("latin-1"), "203.0.113.1:80", "not-an-ip", "203.0.113.1,,")]
            return results, bad

    results, bad = asyncio.run(run())
    assert results == {"client A via the proxy": [REFUSED, REFUSED, 429], "B spoofing": [REFUSED, REFUSED, 429]}
    assert [r.status_code for r in bad] == [400] * 4
    assert all(r.json()["error"]["code"] == "INVALID_ARGUMENT" for r in bad)


def test_loopback_is_exempt_by_default(tmp_path):
    app = create_app(limited_config(tmp_path))

    async def run():
        async with client_for(app, "127.0.0.1") as local:
            return await statuses(local, 6)

    assert asyncio.run(run()) == [REFUSED] * 6


def test_reads_beacons_and_sign_in_have_their_own_limits(tmp_path):
    app = create_app(limited_config(tmp_path, reads_per_address="2 per minute", beacons_per_address="2 per minute",
                                    sign_in_per_address="1 per minute"))

    async def run():
        async with client_for(app, CLIENT_A) as a:
            return {
                "reads": await statuses(a, 3, "GET", "/v1/videos"),
                "beacons": await statuses(a, 3, "POST", "/v1/views", json={"events": []}),
                "writes": await statuses(a, 1),
                "sign_in": [(await a.post("/account/sign-in", data={})).status_code for _ in range(2)],
                "stream bytes": await statuses(a, 4, "GET", "/origin/t/x/nothing.ts"),
            }

    got = asyncio.run(run())
    assert got["reads"][2] == 429 and 429 not in got["reads"][:2]
    assert got["beacons"] == [422, 422, 429]
    assert got["writes"] == [REFUSED]
    assert got["sign_in"][1] == 429 and got["sign_in"][0] != 429
    assert 429 not in got["stream bytes"]


def test_categories():
    sign_in = ["/account/sign-in"]
    assert category_of("GET", "/v1/videos/abc", sign_in) == READS
    assert category_of("HEAD", "/v1/uploads/abc", sign_in) == READS
    assert category_of("PATCH", "/v1/uploads/abc", sign_in) == WRITES
    assert category_of("POST", "/v1/videos/abc/views", sign_in) == BEACONS
    assert category_of("POST", "/v1/views", sign_in) == BEACONS
    assert category_of("POST", "/account/sign-in", sign_in) == SIGN_IN
    assert category_of("GET", "/account/sign-in", sign_in) == READS
    for path in ("/healthz", "/static/app.js", "/origin/t/tok/k", "/edge/US/t/tok/k", "/ads/house-preroll.mp4"):
        assert category_of("GET", path, sign_in) is None
    assert category_of("OPTIONS", "/v1/uploads", sign_in) is None


def test_429_is_documented_wherever_a_limit_applies(tmp_path):
    document = create_app(limited_config(tmp_path)).openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            limited = category_of(method.upper(), path, ["/account/sign-in"]) is not None
            answer = operation["responses"].get("429")
            if limited:
                assert answer and "Retry-After" in answer["headers"], (method, path)
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


@pytest.mark.parametrize("rate", ["fifty per second", "50 per fortnight"])
def test_a_malformed_rate_is_a_config_error(tmp_path, rate):
    with pytest.raises(ValueError, match="limits.writes_per_address"):
        create_app(limited_config(tmp_path, writes_per_address=rate))


def test_a_busy_client_is_counted_in_blocks_across_processes_and_never_let_past_its_limit(tmp_path):
    """Two gateways (two RateLimits on one store) counting one busy address: hits are taken
    from the store in blocks (gateway.ratelimit.lease_size), so the store is asked about
    one request in a block; no more than the limit get through, and at most one block per
    gateway is lost to hits taken and not spent."""
    from longtail_common.adapters import make_rate_limit_storage
    from gateway.ratelimit import BY_ADDRESS, RateLimits, lease_size

    cfg = limited_config(tmp_path, reads_per_address="400 per minute")
    gateways = [RateLimits(cfg.limits, make_rate_limit_storage(cfg)) for _ in range(2)]
    block = lease_size(gateways[0].items[READS, BY_ADDRESS])
    assert block == 20

    async def spend() -> list[int]:
        return [await gateways[i % 2].retry_after(READS, BY_ADDRESS, CLIENT_A) for i in range(600)]

    waits = asyncio.run(spend())
    admitted = waits.count(0)
    assert 400 - 2 * block <= admitted <= 400
    assert all(w >= 1 for w in waits[admitted + 2 * block:])  # refused with a Retry-After
    # Another address has its own budget, taken in a block of its own.
    assert asyncio.run(gateways[0].retry_after(READS, BY_ADDRESS, CLIENT_B)) == 0
    assert gateways[0]._leases[READS, BY_ADDRESS, CLIENT_B][0] == block - 1
    for limits in gateways:
        limits.close()
