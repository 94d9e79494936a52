"""The watch page keeps playing past its signatures' expiry: with a stream lifetime of a
few seconds, Chromium plays the pre-roll and the content, the page refreshes its watch
payload, and a quality switch made after the first URLs expired fetches the new rendition
with the fresh signature (no 403, no fatal error); the beacons are accepted.

Same browser setup as tests/test_browser_pages.py (Debian's chromium through Playwright).
"""
from __future__ import annotations

import datetime as dt
import re
import time

import httpx
import pytest

from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.test_browser_pages import DESKTOP, READY_TIMEOUT_MS, browser, new_page, wait_player  # noqa: F401

pytestmark = pytest.mark.slow

TTL_S = 6  # stream URLs and playback ids live 6-7 s: expired long before the clip ends


@pytest.fixture(scope="module")
def platform(tmp_path_factory, browser):  # noqa: F811
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-browser-signed")))
    cfg.playback.ttl_s, cfg.playback.window_s = TTL_S, 1
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def video(platform, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("clips") / "signed-clip.mp4"
    make_test_clip(str(path), seconds=14, height=480)
    with httpx.Client(timeout=60, headers=bearer(platform.cfg, "uploader")) as client:
        vid = upload_file(client, platform.gateway_url, str(path), "Signed clip", "signedchan")
        assert wait_ready(client, platform.gateway_url, vid, timeout_s=READY_TIMEOUT_MS / 1000)["status"] == "READY"
    return vid


def token_of(url: str) -> str:
    return url.split("/t/", 1)[1].split("/", 1)[0]


def test_playback_continues_past_expiry_and_across_a_quality_switch(browser, platform, video):  # noqa: F811
    page = new_page(browser, platform.gateway_url, DESKTOP)
    media: list[tuple[str, int]] = []
    page.on("response", lambda resp: media.append((resp.url, resp.status)) if "/origin/" in resp.url else None)
    page.goto(f"/watch/{video}")
    page.wait_for_selector("#start:enabled")
    first = page.evaluate("window.longtailPlayer.payload")
    first_token = token_of(first["stream"]["url"])
    expires = dt.datetime.fromisoformat(first["stream"]["expires_at"].replace("Z", "+00:00")).timestamp()
    page.click("#start")
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                timeout=90_000)

    # Past the first URLs' expiry, with the payload refreshed meanwhile.
    time.sleep(max(0.0, expires - time.time() + 0.5))
    assert httpx.get(first["stream"]["url"], timeout=30).status_code == 403
    wait_player(page, "window.longtailPlayer.log.some(e => e.event === 'payload-refreshed')")
    fetched = {int(h) for url, _ in media for h in re.findall(r"/(\d+)p/", url)}
    options = page.eval_on_selector_all("#quality option", "os => os.map(o => [o.value, o.textContent])")
    by_height = {int(label.split("p")[0]): value for value, label in options[1:]}
    target = min(h for h in by_height if h not in fetched) if set(by_height) - fetched else min(by_height)
    mark = len(media)
    page.select_option("#quality", by_height[target])
    wait_player(page, f"window.longtailPlayer.log.some(e => e.event === 'level-switched' && e.height === {target})")
    wait_player(page, "window.longtailPlayer.phase === 'ended'", timeout=90_000)

    after = [(url, status) for url, status in media[mark:] if f"/{target}p/" in url]
    assert after, media[mark:]
    assert all(token_of(url) != first_token for url, _ in after), after  # the fresh signature
    assert all(status in (200, 206) for _, status in media), [m for m in media if m[1] >= 400]
    log = page.evaluate("window.longtailPlayer.log")
    assert not [e for e in log if e["event"] == "hls-error" and e["fatal"]], log
    page.wait_for_function("window.longtailPlayer.beacons.every(b => b.status !== null)")
    beacons = page.evaluate("window.longtailPlayer.beacons")
    assert [b["kind"] for b in beacons][0] == "start" and all(b["status"] == 202 for b in beacons), beacons
    assert not page.errors
    page.context.close()
