"""QoE measured, not guessed, and placement's on-day moment, on the embedded platform.

A scripted player plays a video through a latency-injecting proxy that holds back every
answer from origin (/origin/...) by ORIGIN_DELAY_S, as a far origin would, and nothing from
the edge. It measures start-up time as a player does (play request to the first segment
in hand: master playlist, variant playlist, first segment, three round trips) and reports
it in its beacons with where the stream came from. Then `longtail placement qoe` must find
the start-up gap the proxy made and price it; the daily job must use that measured penalty.

Then the on-day moment: the daily job marks a pair that a week of views would repay but
yesterday's would not as "fill on first request"; the first watch request is served from
origin and announced on `edge.fills`; placement_svc fills the edge and the next requests
stream from it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import pytest

from longtail_cli.launcher import Platform, free_port
from longtail_common import qoe
from longtail_common.config import Config
from tests.latency_proxy import LatencyProxy
from tests.test_views_e2e import make_ready_video, run_daily, wait_counts

pytestmark = pytest.mark.slow

ORIGIN_DELAY_S = 0.4  # per request to origin; a start-up makes three
PLAYBACKS = 8  # 8 views yesterday x the 3-day horizon repay a push (the rule needs > 6.3)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-qoe")))
    cfg.platform.regions = ["US", "GB"]
    cfg.placement.qoe_min_playbacks = PLAYBACKS
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=0)
    p.start()
    yield p
    p.stop()


def via(proxy: LatencyProxy, url: str) -> str:
    """The same URL through the proxy."""
    parts, target = urlsplit(url), urlsplit(proxy.url)
    return urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))


def first_media_line(text: str) -> str:
    return next(line for line in text.splitlines() if line and not line.startswith("#"))


def play(c: httpx.Client, proxy: LatencyProxy, vid: str, region: str) -> dict:
    """One playback: the watch payload, then (the viewer presses play) what a player needs
    for the first frame; then the beacon with what it measured."""
    watch = c.get(via(proxy, f"{proxy.upstream}/v1/videos/{vid}/watch"), params={"region": region}).json()
    master_url = via(proxy, watch["stream"]["url"])
    t0 = time.perf_counter()  # the play request
    master = c.get(master_url)
    variant_url = urljoin(master_url, first_media_line(master.text))
    variant = c.get(variant_url)
    segment = c.get(urljoin(variant_url, first_media_line(variant.text)))
    startup_ms = round((time.perf_counter() - t0) * 1000)
    assert master.status_code == variant.status_code == segment.status_code == 200
    beacon = {"kind": "start", "bytes": len(segment.content), "playback_id": watch["playback"]["id"],
              "startup_ms": startup_ms, "ladder_position": 1, "served_from": watch["stream"]["served_from"]}
    r = c.post(via(proxy, f"{proxy.upstream}/v1/videos/{vid}/views"), json=beacon)
    assert r.status_code == 202, r.text
    return {"served_from": watch["stream"]["served_from"], "startup_ms": startup_ms}


def placement_cli(platform, *args) -> dict:
    env = dict(os.environ, **platform.cfg.to_env())
    proc = subprocess.run([sys.executable, "-m", "longtail_cli.cli", "placement", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_measured_startup_gap_prices_qoe_and_first_requests_fill_the_edge(platform):
    a, b = make_ready_video(platform), make_ready_video(platform)
    today = dt.datetime.now(dt.timezone.utc).date()
    with LatencyProxy(platform.gateway_url, {"/origin/": ORIGIN_DELAY_S}) as proxy, httpx.Client(timeout=60) as c:
        before = [play(c, proxy, a, "GB") for _ in range(PLAYBACKS)]
        assert {p["served_from"] for p in before} == {"origin"}
        for _ in range(60):  # a popular week for b in US (every start a view of its own)
            play_id = c.get(f"{platform.gateway_url}/v1/videos/{b}/watch", params={"region": "US"}).json()
            r = c.post(f"{platform.gateway_url}/v1/videos/{b}/views",
                       json={"kind": "start", "playback_id": play_id["playback"]["id"]})
            assert r.status_code == 202
        wait_counts(platform, a, PLAYBACKS)
        wait_counts(platform, b, 60)

        first = run_daily(platform, today + dt.timedelta(days=1))  # yesterday's views push a to GB
        assert [a, "GB"] in first["pushed"], first
        after = [play(c, proxy, a, "GB") for _ in range(PLAYBACKS)]
        assert {p["served_from"] for p in after} == {"cdn"}
        assert proxy.delayed == 3 * PLAYBACKS  # only origin's answers were held back
        # The gateway's histograms per region x served_from saw every playback's start-up.
        from tests.test_telemetry import _scrape_all, _series

        metrics = _scrape_all(platform)
        for where in ("origin", "cdn"):
            assert _series(metrics, "longtail_playback_startup_seconds_count", region="GB",
                           served_from=where) == [PLAYBACKS]

        # What the player measured reaches the counters, and the penalty follows from it.
        deadline = time.monotonic() + 60
        while True:
            report = placement_cli(platform, "qoe", "--date", (today + dt.timedelta(days=1)).isoformat(), "--json")
            sides = {(s["region"], s["served_from"]): s for s in report["sides"]}
            if sides.get(("GB", "cdn"), {}).get("playbacks") == PLAYBACKS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sides[("GB", "origin")]["playbacks"] == sides[("GB", "cdn")]["playbacks"] == PLAYBACKS
        measured_gap = (sum(p["startup_ms"] for p in before) - sum(p["startup_ms"] for p in after)) / PLAYBACKS / 1000
        pen = report["penalties"]["GB"]
        assert pen["startup_gap_s"] == pytest.approx(measured_gap, abs=0.002)  # the beacons' values, no guess
        assert pen["startup_gap_s"] >= 3 * ORIGIN_DELAY_S * 0.75  # the injected latency is what it found
        assert pen["per_gb"] == pytest.approx(pen["startup_gap_s"] * qoe.ABANDONMENT_PER_S
                                              * report["value_per_view_usd"] / report["gb_per_view"])
        assert report["penalties"]["US"]["per_gb"] is None  # no edge playbacks there: the configured one
        print("qoe:", json.dumps({"sides": report["sides"], "GB": pen}))

        # The on-day moment: two days on, b had no views yesterday (not pushed) but its week
        # repays a fill in US: its first request there fills the edge.
        second = run_daily(platform, today + dt.timedelta(days=2))
        assert second["qoe_penalty"]["GB"]["used"] == "measured"
        assert second["qoe_penalty"]["GB"]["per_gb"] == pytest.approx(pen["per_gb"])
        assert second["qoe_penalty"]["US"]["used"] == "configured"
        assert second["fill_on_request"] >= 1 and [b, "US"] in second["evicted"], second
        watch = c.get(f"{platform.gateway_url}/v1/videos/{b}/watch", params={"region": "US"}).json()
        assert watch["stream"]["served_from"] == "origin"  # the first request: served from origin
        deadline = time.monotonic() + 60
        while watch["stream"]["served_from"] != "cdn" and time.monotonic() < deadline:
            time.sleep(0.3)
            watch = c.get(f"{platform.gateway_url}/v1/videos/{b}/watch", params={"region": "US"}).json()
        assert watch["stream"]["served_from"] == "cdn" and "/edge/US/" in watch["stream"]["url"]
        assert c.get(watch["stream"]["url"]).status_code == 200
        # a's GB pair had no views yesterday and a week that does not repay a fill: no admission.
        gb = c.get(f"{platform.gateway_url}/v1/videos/{a}/watch", params={"region": "GB"}).json()
        assert gb["stream"]["served_from"] == "origin"
