"""Captions end to end on the embedded backends, every service a process: a READY video
with speech gains an uploaded SRT caption (after READY, no re-transcode) that the watch
payload lists, the HLS master and the DASH MPD carry as subtitle tracks (read back with
m3u8 and mpegdash, every URI fetched under the same signed token), and search finds by a
word of it; bad files answer 400 naming the line; only the owner (or an admin) adds or
removes one. With `transcoder.automatic_captions` on, the transcoders' speech to text
adds an automatic English caption, whose words search finds too. And Chromium with hls.js
shows a caption's cue at its time."""
from __future__ import annotations

import pathlib
import subprocess
import time

import httpx
import imageio_ffmpeg
import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from longtail_cli.cli import upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow

SPEECH = pathlib.Path(__file__).parent / "data" / "speech_en.ogg"  # espeak-ng, en-us, known text
SRT = ("1\n00:00:00,500 --> 00:00:02,000\nBonjour zeppelinfrog\n\n"
       "2\n00:00:02,500 --> 00:00:04,000\nDeuxième réplique\n").encode()


def eventually(check, timeout_s: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("captions")))
    cfg.transcoder.automatic_captions = True
    cfg.limits.uploads_per_day = 0
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def who(platform):
    clients = {name: httpx.Client(timeout=60, headers=bearer(platform.cfg, name, admin=name == "admin"))
               for name in ("owner", "other", "admin")}
    clients["anonymous"] = httpx.Client(timeout=60)
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture(scope="module")
def video_id(platform, who, tmp_path_factory) -> str:
    clip = tmp_path_factory.mktemp("clip") / "speech.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=426x240:rate=25", "-i", str(SPEECH), "-shortest", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(clip)], check=True)
    vid = upload_file(who["owner"], platform.gateway_url, str(clip), "Spoken clip", "talks")
    assert wait_ready(who["owner"], platform.gateway_url, vid, timeout_s=300)["status"] == "READY"
    return vid


def post_caption(client, base, vid, data, language="fr", media_type="application/x-subrip", **params):
    return client.post(f"{base}/v1/videos/{vid}/captions", params={"language": language, **params}, content=data,
                       headers={"Content-Type": media_type})


def test_only_the_owner_adds_captions_and_bad_ones_name_the_line(platform, who, video_id):
    base = platform.gateway_url
    assert post_caption(who["anonymous"], base, video_id, SRT).status_code == 401
    assert post_caption(who["other"], base, video_id, SRT).status_code == 403
    bad = post_caption(who["owner"], base, video_id, b"1\n00:00:01,000 --> 00:00:00,500\nbackwards\n")
    assert bad.status_code == 400 and bad.json()["error"]["line"] == 2, bad.text
    assert "line 2" in bad.json()["error"]["message"]
    latin1 = post_caption(who["owner"], base, video_id, "WEBVTT\n\n00:01.000 --> 00:02.000\ncafé\n".encode("latin-1"),
                          media_type="text/vtt")
    assert latin1.status_code == 400 and latin1.json()["error"]["line"] == 4
    assert post_caption(who["owner"], base, video_id, SRT, language="french").status_code == 400
    assert post_caption(who["owner"], base, video_id, SRT, media_type="text/plain").status_code == 415
    assert post_caption(who["owner"], base, "nosuchvideo", SRT).status_code == 404
    assert who["other"].delete(f"{base}/v1/videos/{video_id}/captions/fr").status_code == 403


def fetch(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url)
    assert response.status_code == 200, (url, response.text[:200])
    return response


def test_an_uploaded_caption_plays_in_hls_and_dash_and_is_searched(platform, who, video_id):
    base, owner, viewer = platform.gateway_url, who["owner"], who["anonymous"]
    created = post_caption(owner, base, video_id, SRT, language="FR", kind="captions")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["language"], body["label"], body["kind"], body["automatic"], body["cue_count"]) == (
        "fr", "Français", "captions", False, 2)
    watch = eventually(lambda: (w := viewer.get(f"{base}/v1/videos/{video_id}/watch").json()).get("captions")
                       and any(c["language"] == "fr" for c in w["captions"]) and w, what="captions in the watch payload")
    caption = next(c for c in watch["captions"] if c["language"] == "fr")
    assert "/t/" in caption["url"] and fetch(viewer, caption["url"]).text.startswith("WEBVTT")

    hls_url = watch["stream"]["manifests"]["hls"]
    master = m3u8.loads(fetch(viewer, hls_url).text, uri=hls_url)
    subs = [m for m in master.media if m.type == "SUBTITLES" and m.language == "fr"]
    assert len(subs) == 1 and subs[0].name == "Français" and "describes-music-and-sound" in subs[0].characteristics
    assert all(p.stream_info.subtitles == "subs" for p in master.playlists)
    sub_url = str(httpx.URL(hls_url).join(subs[0].uri))
    playlist = m3u8.loads(fetch(viewer, sub_url).text)
    assert playlist.is_endlist and playlist.segments
    first = fetch(viewer, str(httpx.URL(sub_url).join(playlist.segments[0].uri))).text
    assert "X-TIMESTAMP-MAP" in first and "zeppelinfrog" in first

    dash_url = watch["stream"]["manifests"]["dash"]
    mpd = MPEGDASHParser.parse(fetch(viewer, dash_url).text)
    text = [a for a in mpd.periods[0].adaptation_sets if a.content_type == "text"]
    assert [(a.lang, a.mime_type, a.roles[0].value) for a in text] == [("fr", "text/vtt", "caption")]
    vtt_url = str(httpx.URL(dash_url).join(text[0].representations[0].base_urls[0].base_url_value))
    assert "zeppelinfrog" in fetch(viewer, vtt_url).text

    found = eventually(lambda: [v["id"] for v in viewer.get(f"{base}/v1/search", params={"q": "zeppelinfrog"})
                                .json()["videos"]], what="search by a caption word")
    assert found == [video_id]


def test_replacing_and_deleting_a_caption(platform, who, video_id):
    base, owner = platform.gateway_url, who["owner"]
    first = post_caption(owner, base, video_id, SRT, language="de")
    assert first.status_code == 201
    old_url = first.json()["url"]
    again = post_caption(owner, base, video_id, SRT.replace(b"zeppelinfrog", b"zweitfassung"), language="de",
                         label="Deutsch (SDH)")
    assert again.status_code == 201 and again.json()["label"] == "Deutsch (SDH)"
    assert owner.get(old_url).status_code == 404  # the replaced version's files are gone
    listed = owner.get(f"{base}/v1/videos/{video_id}/captions").json()["captions"]
    assert [c["language"] for c in listed if c["language"] == "de"] == ["de"]
    assert who["admin"].delete(f"{base}/v1/videos/{video_id}/captions/de").status_code == 204
    assert owner.delete(f"{base}/v1/videos/{video_id}/captions/de").status_code == 404

    def master_languages():
        watch = who["anonymous"].get(f"{base}/v1/videos/{video_id}/watch").json()
        master = m3u8.loads(who["anonymous"].get(watch["stream"]["manifests"]["hls"]).text)
        return {m.language for m in master.media if m.type == "SUBTITLES"}
    eventually(lambda: "de" not in master_languages(), what="the deleted caption leaving the master")
    assert who["anonymous"].get(again.json()["url"]).status_code == 404


def test_automatic_captions_transcribe_the_speech(platform, who, video_id):
    base, viewer = platform.gateway_url, who["anonymous"]

    def automatic():
        listed = viewer.get(f"{base}/v1/videos/{video_id}/captions").json()["captions"]
        return next((c for c in listed if c["automatic"]), None)
    caption = eventually(automatic, timeout_s=240, what="the automatic caption")
    assert (caption["language"], caption["kind"], caption["label"]) == ("en", "subtitles", "English (automatic)")
    vtt = fetch(viewer, caption["url"]).text
    cues = [line for line in vtt.split("\n\n")[1:] if "-->" in line]
    assert len(cues) == caption["cue_count"] > 0
    word = next(w for cue in cues for w in cue.split("\n", 1)[1].split() if len(w) >= 4)
    found = eventually(lambda: video_id in [v["id"] for v in viewer.get(f"{base}/v1/search", params={"q": word})
                                            .json()["videos"]], what=f"search by the heard word {word!r}")
    assert found


HLS_JS = pathlib.Path(__file__).resolve().parents[1] / "web" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
PLAYER = """<!doctype html><html><body><video id="v" muted playsinline width="426" height="240"></video>
<button id="go">play</button><script src="/captest/hls.min.js"></script><script>
const video = document.getElementById('v');
window.hls = new Hls({renderTextTracksNatively: true});
hls.loadSource(MASTER);
hls.attachMedia(video);
hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_e, data) => {
  window.subtitleTracks = data.subtitleTracks.map(t => t.lang);
});
hls.on(Hls.Events.ERROR, (_e, data) => (window.hlsErrors = window.hlsErrors || []).push(data.details));
document.getElementById('go').onclick = () => {
  hls.subtitleDisplay = true;
  hls.subtitleTrack = hls.subtitleTracks.findIndex(t => t.lang === 'es');  // as a captions menu does
  video.play();
};
</script></body></html>"""


def test_hls_js_shows_a_caption_added_after_ready_at_its_time(platform, who, video_id):
    """Chromium with hls.js (the player library the pages use) finds the subtitle track in
    the master, and its cue is timed where the file says: the segmenting and the
    X-TIMESTAMP-MAP line the media timeline up with the cues."""
    if not HLS_JS.exists():
        pytest.skip("web/node_modules is not installed (make setup)")
    base = platform.gateway_url
    vtt = b"WEBVTT\n\n00:00:01.500 --> 00:00:03.000\nHola carambola\n"
    assert post_caption(who["owner"], base, video_id, vtt, language="es", media_type="text/vtt").status_code == 201
    master = eventually(lambda: (w := who["anonymous"].get(f"{base}/v1/videos/{video_id}/watch").json())
                        and any(c["language"] == "es" for c in w.get("captions", [])) and w["stream"]["manifests"]["hls"],
                        what="the es caption in the watch payload")
    playwright = pytest.importorskip("playwright.sync_api")
    from tests.test_browser_pages import _chromium_path

    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium_path())
        try:
            page = browser.new_page(base_url=base)
            page.route("**/captest/hls.min.js", lambda route: route.fulfill(body=HLS_JS.read_bytes(),
                                                                             content_type="text/javascript"))
            page.route("**/captest/player.html", lambda route: route.fulfill(
                body=PLAYER.replace("MASTER", repr(master)), content_type="text/html"))
            page.goto("/captest/player.html")
            state = ("() => ({tracks: window.subtitleTracks, errors: window.hlsErrors, time: "
                     "document.getElementById('v').currentTime, text: [...document.getElementById('v').textTracks]"
                     ".map(t => [t.language, t.mode, t.cues ? t.cues.length : null])})")
            wait_in(page, "window.subtitleTracks && window.subtitleTracks.includes('es')", state)
            page.click("#go")
            cue = ("() => { const t = [...document.getElementById('v').textTracks].find(t => t.language === 'es');"
                   " return t && t.cues && [...t.cues].map(c => [c.startTime, c.endTime, c.text]); }")
            wait_in(page, f"({cue})() && ({cue})().length > 0", state)
            [(start, end, text)] = page.evaluate(cue)
            assert text == "Hola carambola" and abs(start - 1.5) < 0.1 and abs(end - 3.0) < 0.1, (start, end, text)
            wait_in(page, "(() => { const t = [...document.getElementById('v').textTracks]"
                          ".find(t => t.language === 'es'); return t.activeCues && t.activeCues.length"
                          " && t.activeCues[0].text === 'Hola carambola'; })()", state)
        finally:
            browser.close()


def wait_in(page, expression: str, state: str, timeout: float = 60_000) -> None:
    """wait_for_function that, on timeout, says what the page's player was doing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(expression, timeout=timeout)
    except PlaywrightTimeout:
        pytest.fail(f"timed out waiting for {expression!r}; player: {page.evaluate(state)}")
