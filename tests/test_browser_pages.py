"""The browser pages in headless Chromium (Debian's `chromium`, driven by Playwright with
the system executable: no browser download).

One platform and one short generated clip serve every test here; the tests run in file
order and share what the upload test made (the last one, "My videos", deletes it). Screenshots of each page at desktop and phone
width go to tests/artifacts/.

Without chromium (or the playwright package) these tests are skipped locally with the
reason; with CI set they fail instead, like the real-server suites.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import urllib.parse
import uuid

import httpx
import pytest

from longtail_cli.cli import make_test_clip
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import with_password

pytestmark = pytest.mark.slow

ARTIFACTS = pathlib.Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
READY_TIMEOUT_MS = 300_000  # an upper bound for transcoding on a busy 2-core machine, not a target


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip():
        pytest.fail(f"{reason} (CI is set, so a missing browser fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _chromium_path() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    if not path:
        _unavailable("chromium is not installed (Debian: apt-get install chromium; `make setup` does it)")
    return path


@pytest.fixture(scope="module")
def browser():
    executable = _chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=["--autoplay-policy=user-gesture-required"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory, browser):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-browser")))
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    # Short and small, but 480p so the ladder has several rungs to switch between.
    path = tmp_path_factory.mktemp("clips") / "browser-clip.mp4"
    make_test_clip(str(path), seconds=8, height=480)
    return str(path)


@pytest.fixture(scope="module")
def shared() -> dict:
    """What the upload test made (video id, title word), for the tests after it."""
    return {}


def new_page(browser, base: str, size: dict):
    context = browser.new_context(viewport=size, base_url=base)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page, platform, username: str = "browser-uploader") -> None:
    """Signs the page's browser in through the sign-in form (uploading needs an account)."""
    with_password(platform.cfg, username, "browser test password")
    page.goto("/account/sign-in?next=/upload")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "browser test password")
    page.click("#sign-in-submit")
    page.wait_for_url("**/upload")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def assert_fits(page) -> None:
    """Phone layout: nothing forces sideways scrolling."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if overflow > 0:
        culprits = page.evaluate("""[...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth)
            .map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className).slice(0, 5)""")
        pytest.fail(f"page is {overflow}px wider than the viewport: {culprits}")


def wait_player(page, expression: str, timeout: float = 60_000) -> None:
    """wait_for_function that, on timeout, says what the player did."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(expression, timeout=timeout)
    except PlaywrightTimeout:
        log = page.evaluate("window.longtailPlayer && window.longtailPlayer.log.slice(-25)")
        pytest.fail(f"timed out waiting for {expression!r}; player log: {log}; page errors: {page.errors}")


def search_ids(base: str, q: str) -> list[str]:
    resp = httpx.get(f"{base}/v1/search", params={"q": q}, timeout=30)
    assert resp.status_code == 200, resp.text
    return [v["id"] for v in resp.json()["videos"]]


def video_status(base: str, vid: str) -> str:
    return httpx.get(f"{base}/v1/videos/{vid}", timeout=30).json()["status"]


def test_upload_page_uploads_and_links_to_watch(browser, platform, clip, shared):
    base = platform.gateway_url
    word = "quokka" + uuid.uuid4().hex[:8]
    title = f"Browser upload {word}"
    page = new_page(browser, base, DESKTOP)
    sign_in(page, platform)
    page.fill("input[name=title]", title)
    page.fill("textarea[name=description]", "Uploaded by the browser test.")
    page.fill("input[name=channel_id]", "browserchan")
    page.set_input_files("input[name=file]", clip)
    page.click("#upload-submit")

    # Upload done: the page follows the video through PROCESSING.
    page.wait_for_function("['processing', 'ready', 'failed'].includes(window.longtailUpload.phase)",
                           timeout=120_000)
    assert page.eval_on_selector("#upload-progress", "e => e.value") == 100
    vid = page.evaluate("window.longtailUpload.videoId")
    assert vid and re.fullmatch(r"[A-Za-z0-9_-]+", vid)
    shared.update(video_id=vid, word=word, title=title)

    # While it is not READY, search must not find it: checked between two status reads
    # that both say PROCESSING, so the answer is about a video that was not READY.
    before = video_status(base, vid)
    hits = search_ids(base, word)
    after = video_status(base, vid)
    if before == after == "PROCESSING":
        assert vid not in hits
        shared["searched_while_processing"] = True

    # READY shows the link without a reload.
    page.wait_for_selector("#watch-link", state="visible", timeout=READY_TIMEOUT_MS)
    assert page.evaluate("window.longtailUpload.phase") == "ready"
    assert page.get_attribute("#watch-link", "href") == f"/watch/{vid}"
    assert word in page.inner_text("#watch-link")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    assert not page.errors
    screenshot(page, "upload-desktop")

    phone = new_page(browser, base, PHONE)
    sign_in(phone, platform)
    assert_fits(phone)
    screenshot(phone, "upload-phone")
    phone.context.close()

    # The link leads to the watch page.
    page.click("#watch-link")
    page.wait_for_url(f"**/watch/{vid}")
    page.wait_for_function(f"document.querySelector('#title').textContent === {title!r}")
    page.context.close()


def _segment_requests(page) -> list[str]:
    urls: list[str] = []
    page.on("request", lambda req: urls.append(req.url) if re.search(r"\.(ts|m4s|mp4)(\?|$)", req.url)
            and "/ads/" not in req.url else None)
    return urls


def test_watch_page_plays_preroll_then_content(browser, platform, shared):
    vid = shared.get("video_id") or pytest.fail("the upload test did not produce a video")
    page = new_page(browser, platform.gateway_url, DESKTOP)
    beacons: list[dict] = []
    page.on("request", lambda req: beacons.append(req.post_data_json)
            if req.method == "POST" and req.url.endswith(f"/v1/videos/{vid}/views") else None)
    ad_requests: list[str] = []
    page.on("request", lambda req: ad_requests.append(req.url) if "/ads/" in req.url else None)
    page.goto(f"/watch/{vid}")
    page.wait_for_selector("#start:enabled")
    assert page.inner_text("#title") == shared["title"]
    assert page.inner_text("#channel") == "browserchan"
    assert page.get_attribute("#content", "poster")
    screenshot(page, "watch-desktop")

    page.click("#start")
    # The pre-roll (the gateway's house ad: the payload's creative_url is empty) plays first.
    page.wait_for_function("window.longtailPlayer.phase === 'ad'")
    assert page.is_visible("#ad-badge")
    page.wait_for_function("document.querySelector('#ad').currentTime > 1")
    assert page.evaluate("document.querySelector('#content').paused")
    screenshot(page, "watch-ad-desktop")

    # Then the content plays past 3 s.
    wait_player(page, "document.querySelector('#content').currentTime > 3", timeout=90_000)
    log = page.evaluate("window.longtailPlayer.log")
    events = [e["event"] for e in log]
    ad_end = next(e for e in log if e["event"] == "ad-end")
    playing = next(e for e in log if e["event"] == "content-playing")
    assert events.index("ad-start") < events.index("ad-end") < events.index("content-playing")
    assert ad_end["how"] == "ended" and ad_end["played_s"] > 4  # the whole 5 s ad, not skipped
    assert playing["t"] >= ad_end["t"] and playing["currentTime"] < 1  # content from its start
    assert any(u.endswith("/ads/house-preroll.mp4") for u in ad_requests)
    assert "content-error" not in events
    assert not [e for e in log if e["event"] == "hls-error" and e["fatal"]]
    assert page.evaluate("document.querySelector('#content').error") is None
    screenshot(page, "watch-playing-desktop")

    # Beacons: start, then complete at the end, carrying the bytes fetched for playback.
    wait_player(page, "window.longtailPlayer.phase === 'ended'")
    page.wait_for_function("window.longtailPlayer.beacons.some(b => b.kind === 'complete' && b.status !== null)")
    kinds = [b["kind"] for b in beacons]
    assert kinds[0] == "start" and kinds[-1] == "complete", kinds
    assert sum(b["bytes"] for b in beacons) > 10_000 and all(b["region"] == "US" for b in beacons)
    # QoE the player measured (Mux's definitions): start-up from the play request to the
    # first frame less the pre-roll, the rung playing, where the stream came from.
    start = beacons[0]
    assert 0 < start["startup_ms"] < 60_000 and start["ladder_position"] >= 1, start
    assert start["startup_ms"] == round(playing["startup_ms"])
    assert {b["served_from"] for b in beacons} == {"origin"}
    assert all(b["rebuffer_count"] >= 0 and b["rebuffer_ms"] >= 0 for b in beacons)
    assert not page.errors
    page.context.close()

    phone = new_page(browser, platform.gateway_url, PHONE)
    phone.goto(f"/watch/{vid}")
    phone.wait_for_selector("#start:enabled")
    assert_fits(phone)
    screenshot(phone, "watch-phone")
    phone.context.close()


def _rungs(base_url: str, master_url: str) -> dict[str, int]:
    """Variant playlist directory -> rendition height, from the master playlist."""
    master = httpx.get(master_url, timeout=30).text
    rungs, height = {}, None
    for line in master.splitlines():
        m = re.search(r"RESOLUTION=\d+x(\d+)", line)
        if m:
            height = int(m.group(1))
        elif line and not line.startswith("#") and height:
            playlist = urllib.parse.urljoin(master_url, line)
            rungs[playlist.rsplit("/", 1)[0] + "/"] = height
            height = None
    return rungs


def test_forced_quality_switch_changes_rendition(browser, platform, shared):
    vid = shared.get("video_id") or pytest.fail("the upload test did not produce a video")
    base = platform.gateway_url
    watch = httpx.get(f"{base}/v1/videos/{vid}/watch", timeout=30).json()
    rungs = _rungs(base, watch["stream"]["url"])
    assert len(set(rungs.values())) >= 2, rungs

    def heights(urls):
        return {h for u in urls for prefix, h in rungs.items() if u.startswith(prefix)}

    page = new_page(browser, base, DESKTOP)
    segments = _segment_requests(page)
    page.goto(f"/watch/{vid}")
    page.wait_for_selector("#start:enabled")
    # Keyboard only: Tab to the play button, Enter starts it.
    for _ in range(20):
        if page.evaluate("document.activeElement && document.activeElement.id") == "start":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "start"
    page.keyboard.press("Enter")
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused")
    fetched = heights(segments)
    assert fetched, segments

    # Force a rung that has not been fetched (the lowest, or else the highest).
    options = page.eval_on_selector_all("#quality option", "os => os.map(o => [o.value, o.textContent])")
    assert options[0] == ["-1", "Auto"] and len(options) == len(rungs) + 1
    by_height = {int(label.split("p")[0]): value for value, label in options[1:]}
    target = min(by_height) if min(by_height) not in fetched else max(by_height)
    mark = len(segments)
    page.select_option("#quality", by_height[target])
    wait_player(page, f"window.longtailPlayer.log.some(e => e.event === 'level-switched' && e.height === {target})")
    page.wait_for_function("document.querySelector('#content').currentTime > 0")
    assert target in heights(segments[mark:]), (target, segments[mark:])
    assert f"{target}p" in page.inner_text("#level-now")
    assert not page.errors
    page.context.close()


def test_search_finds_video_only_when_ready(browser, platform, shared):
    vid = shared.get("video_id") or pytest.fail("the upload test did not produce a video")
    base = platform.gateway_url
    assert shared.get("searched_while_processing"), "the video was never seen PROCESSING, so search was not checked"
    # The index follows video.published asynchronously: wait for it (bounded).
    page = new_page(browser, base, DESKTOP)
    page.goto("/")
    page.wait_for_function(
        f"fetch('/v1/search?q={shared['word']}').then(r => r.json()).then(b => b.videos.some(v => v.id === '{vid}'))",
        timeout=60_000, polling=500)
    page.goto("/")
    assert page.is_visible(f"a[href='/watch/{vid}']")  # latest videos on the home page
    page.fill("input[name=q]", shared["word"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=*")
    link = page.locator(f"#results a[href='/watch/{vid}']")
    assert link.count() == 1 and shared["title"] in link.inner_text()
    screenshot(page, "home-search-desktop")
    hits = search_ids(base, shared["word"].upper())
    assert hits == [vid]
    assert search_ids(base, "nosuchword" + uuid.uuid4().hex[:6]) == []
    page.context.close()

    phone = new_page(browser, base, PHONE)
    phone.goto(f"/?q={shared['word']}")
    assert phone.locator(f"a[href='/watch/{vid}']").count() == 1
    assert_fits(phone)
    screenshot(phone, "home-search-phone")
    phone.goto("/")
    screenshot(phone, "home-phone")
    phone.context.close()


def test_page_and_search_errors(platform):
    base = platform.gateway_url
    resp = httpx.get(f"{base}/v1/search", params={"q": "  "}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INVALID_ARGUMENT"
    resp = httpx.get(f"{base}/v1/search", params={"q": "x", "page_token": "bogus"}, timeout=30)
    assert resp.status_code == 400 and "page_token" in resp.json()["error"]["message"]
    resp = httpx.get(f"{base}/v1/search", params={"q": "x", "page_size": 0}, timeout=30)
    assert resp.status_code == 400
    assert httpx.get(f"{base}/watch/..%2Fetc", timeout=30).status_code == 404
    resp = httpx.get(f"{base}/ads/house-preroll.mp4", headers={"Range": "bytes=0-11"}, timeout=60)
    assert resp.status_code == 206 and resp.content[4:8] == b"ftyp"
    resp = httpx.get(f"{base}/", params={"q": "?!"}, timeout=30)
    assert resp.status_code == 400 and "Type a word" in resp.text


def my_videos_row(page, vid: str):
    return page.locator(f"#my-videos tr[data-video-id='{vid}']")


def test_my_videos_edits_title_and_privacy_then_deletes(browser, platform, shared):
    """Last in the file: it deletes the shared video. The creator's "My videos" shows it with
    its status, privacy and views (the watch test's start beacon, counted by placement);
    edits its title and privacy from the page; another account never sees it; deleted after
    a confirmation, it is gone from every page."""
    vid = shared.get("video_id") or pytest.fail("the upload test did not produce a video")
    base = platform.gateway_url
    page = new_page(browser, base, DESKTOP)
    sign_in(page, platform)
    page.goto("/my/videos")
    row = my_videos_row(page, vid)
    assert row.locator(".status").inner_text() == "READY" and row.locator(".privacy").inner_text() == "public"
    for _ in range(120):  # placement's views consumer counts the beacon within seconds
        if row.locator(".views").inner_text() not in ("0", "–"):
            break
        page.wait_for_timeout(500)
        page.reload()
    assert int(row.locator(".views").inner_text()) >= 1
    screenshot(page, "my-videos-desktop")
    phone = new_page(browser, base, PHONE)
    sign_in(phone, platform)
    phone.goto("/my/videos")
    assert my_videos_row(phone, vid).count() == 1
    assert_fits(phone)
    screenshot(phone, "my-videos-phone")
    phone.context.close()

    new_title = f"Renamed {shared['word']}"
    row.locator("a.edit").click()
    page.wait_for_url(f"**/my/videos/{vid}/edit")
    assert page.input_value("input[name=title]") == shared["title"]
    page.fill("input[name=title]", new_title)
    page.select_option("select[name=privacy]", "private")
    page.click("#edit-save")
    page.wait_for_url("**/my/videos?done=saved")
    assert page.inner_text("#my-videos-notice") == "Saved."
    assert row.locator(".title").inner_text() == new_title and row.locator(".privacy").inner_text() == "private"
    assert page.request.get(f"/v1/videos/{vid}").json()["title"] == new_title
    assert search_ids(base, shared["word"]) == []  # private: out of search at once

    # Another account: no row, no watch page, no edit form; an anonymous visitor is asked to sign in.
    other = new_page(browser, base, DESKTOP)
    sign_in(other, platform, "browser-other")
    other.goto("/my/videos")
    assert my_videos_row(other, vid).count() == 0 and new_title not in other.content()
    assert other.goto(f"/watch/{vid}").status == 404
    assert other.goto(f"/my/videos/{vid}/edit").status == 404
    anonymous = new_page(browser, base, DESKTOP)
    assert anonymous.goto(f"/watch/{vid}").status == 401 and anonymous.is_visible("#private-video")
    assert page.goto(f"/watch/{vid}").status == 200  # the owner still watches it

    # Delete: "Keep it" keeps it; confirmed, it is gone.
    page.goto("/my/videos")
    row.locator("a.delete").click()
    page.wait_for_url(f"**/my/videos/{vid}/delete")
    screenshot(page, "delete-confirm-desktop")
    page.click("#delete-cancel")
    page.wait_for_url("**/my/videos")
    assert row.count() == 1
    row.locator("a.delete").click()
    page.click("#delete-confirm")
    page.wait_for_url("**/my/videos?done=deleted")
    assert row.count() == 0
    assert page.goto(f"/watch/{vid}").status == 404 and page.is_visible("#not-found")
    assert anonymous.goto(f"/watch/{vid}").status == 404
    assert page.request.get(f"/v1/videos/{vid}").status == 404
    assert not page.errors and not other.errors
    for each in (page, other, anonymous):
        each.context.close()
