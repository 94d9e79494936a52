"""The watch page's player in headless Chromium: keyboard shortcuts, playback speed, resume
after a reload, chapters from the description (list and seek-bar marks), the storyboard
preview over the seek bar, the captions and audio menus (from a master playlist given
subtitle and audio renditions by a test-only route), the views count and "more from this
channel" (public videos only).

Same browser setup as tests/test_browser_pages.py (Debian's chromium through Playwright).
The tests run in file order and share two uploads: the clip under test and another video
of its channel.
"""
from __future__ import annotations

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

CHANNEL = "playerchan"
DESCRIPTION = "A clip for the player tests.\n\n0:00 Intro\n0:06 - Middle part\n0:14 Ending\n"
CHAPTERS = [(0, "Intro"), (6, "Middle part"), (14, "Ending")]
SCREENSHOT = "/tmp/longtail-watch-player.png"


@pytest.fixture(scope="module")
def platform(tmp_path_factory, browser):  # noqa: F811
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-browser-player")))
    cfg.limits.uploads_per_day = 0
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=1)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def owner(platform) -> httpx.Client:
    with httpx.Client(base_url=platform.gateway_url, timeout=60, headers=bearer(platform.cfg, "player-owner")) as c:
        yield c


@pytest.fixture(scope="module")
def videos(platform, owner, tmp_path_factory) -> dict:
    """The clip under test (24 s, chapters in its description) and a short second video."""
    clips = tmp_path_factory.mktemp("clips")
    made = {}
    for name, seconds in (("main", 24), ("other", 4)):
        path = clips / f"{name}.mp4"
        make_test_clip(str(path), seconds=seconds, height=240)
        made[name] = upload_file(owner, platform.gateway_url, str(path), f"Player {name}", CHANNEL)
    for vid in made.values():
        assert wait_ready(owner, platform.gateway_url, vid, timeout_s=READY_TIMEOUT_MS / 1000)["status"] == "READY"
    resp = owner.patch(f"/v1/videos/{made['main']}", json={"description": DESCRIPTION})
    assert resp.status_code == 200, resp.text
    return made


def open_watch(browser, platform, vid: str, start: bool = True):  # noqa: F811
    page = new_page(browser, platform.gateway_url, DESKTOP)
    page.goto(f"/watch/{vid}")
    page.wait_for_selector("#start:enabled")
    if start:
        page.click("#start")  # the 5 s house pre-roll, then the content
        wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                    timeout=90_000)
    return page


def current_time(page) -> float:
    return page.evaluate("document.querySelector('#content').currentTime")


def test_details_chapters_views_and_more_from_channel(browser, platform, owner, videos):  # noqa: F811
    page = open_watch(browser, platform, videos["main"], start=False)
    assert page.inner_text("#title") == "Player main"
    page.wait_for_selector("#views:not([hidden])")
    assert re.fullmatch(r"[\d,]+ views?", page.inner_text("#views").strip()), page.inner_text("#views")
    items = page.eval_on_selector_all("#chapters button.chapter", "bs => bs.map(b => [b.dataset.start, b.innerText])")
    assert [(int(s), re.sub(r"^\S+\s+", "", text)) for s, text in items] == CHAPTERS
    marks = page.eval_on_selector_all(".chapter-mark", "ms => ms.map(m => m.dataset.start)")
    assert marks == ["6", "14"]  # none at 0:00, where the bar starts
    page.wait_for_selector(f"#more [data-video-id='{videos['other']}']")
    assert page.evaluate("window.longtailPlayer.more") == [videos["other"]]
    link = page.locator(f"#more a[href='/watch/{videos['other']}']")
    assert "Player other" in link.inner_text()
    assert not page.errors
    page.context.close()

    # Timestamps that do not start at 0:00 are not chapters (nor is a single one).
    for text in ("0:02 Late start\n0:03 More", "0:00 Only one"):
        assert owner.patch(f"/v1/videos/{videos['other']}", json={"description": text}).status_code == 200
        page = open_watch(browser, platform, videos["other"], start=False)
        page.wait_for_function(f"document.querySelector('#description').textContent === {text!r}")
        assert page.evaluate("window.longtailPlayer.chapters") == []
        assert page.is_hidden("#chapters-section") and page.locator(".chapter-mark").count() == 0
        page.context.close()


def test_storyboard_preview_on_seek_bar_hover(browser, platform, videos):  # noqa: F811
    watch = httpx.get(f"{platform.gateway_url}/v1/videos/{videos['main']}/watch", timeout=30).json()
    thumbs = {t["kind"]: t for t in watch["thumbnails"]}
    cues = []  # (start, end, x, y, w, h) from the transcoder's WebVTT
    vtt = httpx.get(thumbs["storyboard_vtt"]["url"], timeout=30).text
    for m in re.finditer(r"(\d+):(\d+):(\d+)\.(\d+) --> (\d+):(\d+):(\d+)\.(\d+)\s+\S+#xywh=(\d+),(\d+),(\d+),(\d+)", vtt):
        g = [int(x) for x in m.groups()]
        cues.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000, *g[8:]))
    assert len(cues) >= 6 and len({c[3] for c in cues}) >= 1

    page = open_watch(browser, platform, videos["main"])
    page.wait_for_function("window.longtailPlayer.storyboardCues.length > 0")
    box = page.locator("#seek-area").bounding_box()
    for fraction in (0.2, 0.9):
        page.mouse.move(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)
        page.wait_for_selector("#preview:not([hidden])")
        t = float(page.get_attribute("#preview", "data-time"))
        duration = page.evaluate("document.querySelector('#content').duration")
        assert abs(t - fraction * duration) < 0.5
        start, end, x, y, w, h = next(c for c in cues if c[0] <= t < c[1])
        style = page.evaluate("""() => { const s = document.querySelector('#preview-image').style;
            return [s.backgroundPosition, s.width, s.height, s.backgroundImage]; }""")
        assert style[:3] == [f"{-x}px {-y}px", f"{w}px", f"{h}px"], (t, style)
        sprite = page.evaluate("window.longtailPlayer.payload.thumbnails.find(t => t.kind === 'storyboard').url")
        assert sprite in style[3]
        assert page.is_visible("#preview-image")
    # The hovered chapter's title is in the preview too (0.9 of 24 s is in "Ending").
    assert page.inner_text("#preview-chapter") == "Ending"
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] - 200)
    page.wait_for_selector("#preview", state="hidden")
    assert not page.errors
    page.context.close()


def test_keyboard_speed_and_resume_after_reload(browser, platform, videos):  # noqa: F811
    page = open_watch(browser, platform, videos["main"])
    page.keyboard.press("k")  # pause
    page.wait_for_function("document.querySelector('#content').paused")
    t0 = current_time(page)
    page.keyboard.press("l")
    page.wait_for_function(f"document.querySelector('#content').currentTime >= {t0 + 9.5}")
    assert current_time(page) <= t0 + 10.5
    page.keyboard.press("ArrowLeft")
    assert abs(current_time(page) - (t0 + 5)) < 0.5
    page.keyboard.press("j")
    assert abs(current_time(page) - max(0, t0 - 5)) < 0.5
    page.keyboard.press("l")
    page.keyboard.press("ArrowRight")
    target = current_time(page)
    assert 10 <= target <= 19, target  # where resume keeps a position (not the first 5 s nor the end)

    page.select_option("#speed", "1.5")
    assert page.evaluate("document.querySelector('#content').playbackRate") == 1.5
    page.keyboard.press(">")
    assert page.evaluate("document.querySelector('#content').playbackRate") == 1.75
    assert page.input_value("#speed") == "1.75"
    page.keyboard.press("m")
    assert page.evaluate("document.querySelector('#content').muted")
    assert page.get_attribute("#mute", "aria-label") == "Unmute (m)"
    page.keyboard.press("m")

    # Back later: the page starts where the viewer left off, at the speed they chose.
    page.wait_for_function("document.querySelector('#content').paused")
    page.reload()
    page.wait_for_selector("#start:enabled")
    page.click("#start")
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                timeout=90_000)
    resumed = page.evaluate("window.longtailPlayer.resumedFrom")
    assert resumed is not None and abs(resumed - target) < 0.5, (resumed, target)
    assert current_time(page) >= target - 0.5
    assert page.is_visible("#resume-notice")
    assert page.evaluate("document.querySelector('#content').playbackRate") == 1.75
    # "Start over" goes back to 0, and a position in the first seconds is not kept.
    page.click("#start-over")
    page.keyboard.press("k")
    page.wait_for_function("document.querySelector('#content').paused")
    assert current_time(page) < 5
    # (saved on the element's seeked and pause events, which follow the call that caused them)
    wait_player(page, f"localStorage.getItem('longtail:resume:{videos['main']}') === null", timeout=10_000)
    assert not page.errors
    page.context.close()


def test_chapter_marks_and_list_seek(browser, platform, videos):  # noqa: F811
    page = open_watch(browser, platform, videos["main"], start=False)
    page.keyboard.press("k")  # starts it (pre-roll, then the content) like the play button
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                timeout=90_000)
    page.keyboard.press("k")
    page.click(".chapter-mark[data-start='14']")
    page.wait_for_function("Math.abs(document.querySelector('#content').currentTime - 14) < 0.5")
    page.wait_for_function("document.querySelector('#chapter-now').textContent === 'Ending'")
    assert page.get_attribute("#chapters button[data-start='14']", "aria-current") == "true"
    page.click("#chapters button[data-start='6']")
    page.wait_for_function("Math.abs(document.querySelector('#content').currentTime - 6) < 0.5")
    page.wait_for_function("document.querySelector('#chapter-now').textContent === 'Middle part'")
    # f: the player's frame (picture and controls) goes full screen, and back.
    page.keyboard.press("f")
    page.wait_for_function("document.fullscreenElement && document.fullscreenElement.id === 'player-frame'")
    page.wait_for_function("document.querySelector('#fullscreen').getAttribute('aria-label') === 'Exit full screen (f)'")
    page.keyboard.press("f")
    page.wait_for_function("document.fullscreenElement === null")
    assert not page.errors
    page.context.close()


SUBTITLES = {
    "en": "Hello from the captions",
    "fr": "Bonjour des sous-titres",
}


def _subtitle_routes(page) -> list[str]:
    """A test-only master playlist with two subtitle renditions and a second audio track
    (the same audio, its playlist asked with ?lang=de so the test sees it fetched)."""
    fetched: list[str] = []
    page.on("request", lambda req: fetched.append(req.url))

    def master(route):
        text = route.fetch().text()
        text = text.replace(',AUDIO="aud"', ',AUDIO="aud",SUBTITLES="subs"')
        extra = [f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="{name}",LANGUAGE="{lang}",DEFAULT=NO,'
                 f'AUTOSELECT=NO,URI="/fixture-subs/{lang}.m3u8"' for lang, name in (("en", "English"), ("fr", "Français"))]
        dub = ('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="Deutsch",LANGUAGE="de",DEFAULT=NO,AUTOSELECT=NO,'
               'CHANNELS="2",URI="audio/playlist.m3u8?lang=de"')
        head, rest = text.split("\n", 1)
        body = "\n".join([head, *extra, rest.rstrip("\n"), dub]) + "\n"  # the dub after the original audio
        route.fulfill(status=200, content_type="application/vnd.apple.mpegurl", body=body)

    def playlist(route):
        lang = route.request.url.rsplit("/", 1)[1].split(".")[0]
        route.fulfill(status=200, content_type="application/vnd.apple.mpegurl", body=(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:30\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:24.0,\n{lang}.vtt\n#EXT-X-ENDLIST\n"))

    def cues(route):
        lang = route.request.url.rsplit("/", 1)[1].split(".")[0]
        route.fulfill(status=200, content_type="text/vtt",
                      body=f"WEBVTT\n\n00:00:00.000 --> 00:00:30.000\n{SUBTITLES[lang]}\n")

    page.route(re.compile(r".*/master\.m3u8(\?.*)?$"), master)
    page.route(re.compile(r".*/fixture-subs/\w+\.m3u8$"), playlist)
    page.route(re.compile(r".*/fixture-subs/\w+\.vtt$"), cues)
    return fetched


SHOWING_CUE = """() => [...document.querySelector('#content').textTracks]
    .filter(t => t.mode === 'showing' && t.kind !== 'metadata')
    .flatMap(t => [...(t.activeCues || [])].map(c => t.language + ':' + c.text))"""


def test_captions_and_audio_menus_follow_the_manifest(browser, platform, videos):  # noqa: F811
    page = new_page(browser, platform.gateway_url, DESKTOP)
    fetched = _subtitle_routes(page)
    page.goto(f"/watch/{videos['main']}")
    page.wait_for_selector("#start:enabled")
    page.click("#start")
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                timeout=90_000)
    page.wait_for_selector("#captions-box:not([hidden])")
    options = page.eval_on_selector_all("#captions option", "os => os.map(o => o.textContent)")
    assert options == ["Off", "English", "Français"]
    assert page.input_value("#captions") == "-1"

    page.select_option("#captions", label="Français")
    wait_player(page, f"({SHOWING_CUE})().includes('fr:{SUBTITLES['fr']}')")
    page.keyboard.press("c")  # captions off
    page.wait_for_function(f"({SHOWING_CUE})().length === 0")
    assert page.input_value("#captions") == "-1"
    page.keyboard.press("c")  # and back to the last language
    wait_player(page, f"({SHOWING_CUE})().includes('fr:{SUBTITLES['fr']}')")
    page.select_option("#captions", label="English")
    wait_player(page, f"({SHOWING_CUE})().includes('en:{SUBTITLES['en']}')")
    assert any(u.endswith("/fixture-subs/en.vtt") for u in fetched)
    # What a viewer sees: captions on the picture, the storyboard preview over the seek bar.
    box = page.locator("#seek-area").bounding_box()
    page.mouse.move(box["x"] + 0.7 * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_selector("#preview:not([hidden])")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Two audio tracks in the group: the menu offers both; choosing one fetches its playlist.
    assert page.is_visible("#audio-box")
    assert page.eval_on_selector_all("#audio option", "os => os.map(o => o.textContent)") == ["Original", "Deutsch"]
    page.select_option("#audio", label="Deutsch")
    wait_player(page, "window.longtailPlayer.log.some(e => e.event === 'audio-switched' && e.id === 1)")
    assert any("audio/playlist.m3u8?lang=de" in u for u in fetched)
    assert not [e for e in page.evaluate("window.longtailPlayer.log") if e["event"] == "hls-error" and e["fatal"]]
    assert not page.errors
    page.context.close()


def test_views_count_follows_playbacks(platform, videos):
    # Every test above started a playback: their "start" beacons are counted by placement.
    url = f"{platform.gateway_url}/v1/videos/{videos['main']}/stats"
    deadline = time.monotonic() + 60
    while (views := httpx.get(url, timeout=30).json()["views"]) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert views >= 4
    assert httpx.get(f"{platform.gateway_url}/v1/videos/nosuchvideo/stats", timeout=30).status_code == 404
    assert httpx.get(f"{platform.gateway_url}/v1/videos/bad..id/stats", timeout=30).status_code in (400, 404, 422)


def test_more_from_channel_lists_public_videos_only(browser, platform, owner, videos):  # noqa: F811
    for privacy in ("unlisted", "private"):
        resp = owner.patch(f"/v1/videos/{videos['other']}", json={"privacy": privacy})
        assert resp.status_code == 200, resp.text
        page = open_watch(browser, platform, videos["main"], start=False)
        page.wait_for_function("window.longtailPlayer.log.some(e => e.event === 'more-from-channel')")
        assert page.evaluate("window.longtailPlayer.more") == [], privacy
        assert page.locator(f"#more [data-video-id='{videos['other']}']").count() == 0
        assert page.is_hidden("#more-section")
        page.context.close()
