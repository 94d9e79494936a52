"""Alternate audio tracks on a running platform (embedded backends, one transcoder): the
owner uploads a German dub (an audio file) and a corrupt file; the transcoder encodes the
dub to AAC in CMAF segments aligned with the video's and fails the other with a reason
(the video plays on); the served HLS master and DASH MPD list the dub (read back with
m3u8 and mpegdash), the watch payload names it, and in headless Chromium choosing it in
the player's audio menu fetches its playlist. Deleting it takes it out of the manifests.
"""
from __future__ import annotations

import io
import subprocess
import time

import av
import httpx
import m3u8
import pytest
from mpegdash.parser import MPEGDASHParser

from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from tests.auth_helpers import bearer
from tests.test_browser_pages import DESKTOP, browser, new_page, wait_player  # noqa: F401

pytestmark = pytest.mark.slow

SECONDS = 8
READY_TIMEOUT_S = 300  # an upper bound on a busy 2-core machine, not a target


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("audio-tracks")))
    cfg.limits.uploads_per_day = 0
    cfg.audio_tracks.max_upload_bytes = 2_000_000
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def owner(platform):
    with httpx.Client(base_url=platform.gateway_url, headers=bearer(platform.cfg, "audio-owner"), timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def video_id(platform, owner, tmp_path_factory) -> str:
    clip = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_test_clip(str(clip), seconds=SECONDS, height=240)
    vid = upload_file(owner, platform.gateway_url, str(clip), "Dubbed clip", "audio-channel")
    assert wait_ready(owner, platform.gateway_url, vid, timeout_s=READY_TIMEOUT_S)["status"] == "READY"
    return vid


def dub_file(path) -> bytes:
    """A 5 s 880 Hz tone in Ogg/Opus: shorter than the video, so it is padded to its length."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=5",
                    "-c:a", "libopus", str(path)], check=True)
    return path.read_bytes()


def tracks(client: httpx.Client, vid: str) -> dict:
    listed = client.get(f"/v1/videos/{vid}/audio-tracks")
    assert listed.status_code == 200, listed.text
    return {(t["language"], t["kind"]): t for t in listed.json()["audio_tracks"]}


def eventually(fetch, check, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout_s} s: {value}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def dubbed(platform, owner, video_id, tmp_path_factory) -> str:
    body = dub_file(tmp_path_factory.mktemp("dub") / "de.ogg")
    made = owner.post(f"/v1/videos/{video_id}/audio-tracks?language=DE&kind=dub", content=body,
                      headers={"Content-Type": "audio/ogg"})
    assert made.status_code == 202, made.text
    assert made.json() == {"language": "de", "label": "Deutsch (dub)", "kind": "dub", "status": "processing"}
    bad = owner.post(f"/v1/videos/{video_id}/audio-tracks?language=fr&kind=description",
                     content=b"\x00not audio at all" * 64, headers={"Content-Type": "audio/mpeg"})
    assert bad.status_code == 202, bad.text
    done = eventually(lambda: tracks(owner, video_id),
                      lambda t: {x["status"] for x in t.values()} == {"ready", "failed"} and len(t) == 2)
    assert done[("de", "dub")]["status"] == "ready", done
    assert done[("fr", "description")]["status"] == "failed"
    assert "not an audio or video file" in done[("fr", "description")]["failure_reason"]
    return video_id


def test_bad_requests(owner, video_id):
    url = f"/v1/videos/{video_id}/audio-tracks"
    assert owner.post(f"{url}?language=klingon", content=b"x", headers={"Content-Type": "audio/ogg"}).status_code == 400
    assert owner.post(f"{url}?language=de&kind=karaoke", content=b"x",
                      headers={"Content-Type": "audio/ogg"}).status_code == 422
    assert owner.post(f"{url}?language=de", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert owner.post(f"{url}?language=de", content=b"", headers={"Content-Type": "audio/ogg"}).status_code == 400
    too_big = owner.post(f"{url}?language=de", content=b"\0" * 2_000_001, headers={"Content-Type": "audio/ogg"})
    assert too_big.status_code == 413
    assert tracks(owner, video_id) == {}  # nothing stored, nothing asked of the transcoder


def test_dub_in_watch_payload_and_manifests(owner, dubbed):
    watched = httpx.get(f"{owner.base_url}/v1/videos/{dubbed}/watch").json()  # anonymous viewer
    assert watched["audio_tracks"] == [{"language": "de", "label": "Deutsch (dub)", "kind": "dub"}]
    assert httpx.get(f"{owner.base_url}/v1/videos/{dubbed}/audio-tracks").json() == {
        "audio_tracks": [{"language": "de", "label": "Deutsch (dub)", "kind": "dub"}]}  # no failed one for viewers
    master_url = watched["stream"]["manifests"]["hls"]
    master = m3u8.loads(httpx.get(master_url).text, uri=master_url)
    audio = {m.language: m for m in master.media if m.type == "AUDIO"}
    assert set(audio) == {None, "de"} and audio["de"].group_id == audio[None].group_id
    assert audio["de"].name == "Deutsch (dub)" and audio["de"].default == "NO"
    dub_pl = m3u8.loads(httpx.get(audio["de"].absolute_uri).text)
    original = m3u8.loads(httpx.get(audio[None].absolute_uri).text)
    # Aligned: the same segment count and boundaries as the video's own sound (4 s segments).
    assert len(dub_pl.segments) == len(original.segments)
    assert [round(s.duration) for s in dub_pl.segments] == [round(s.duration) for s in original.segments]
    base = audio["de"].absolute_uri.rsplit("/", 1)[0]
    init = httpx.get(f"{base}/init.mp4").content
    segment = httpx.get(f"{base}/{dub_pl.segments[0].uri}").content
    with av.open(io.BytesIO(init + segment)) as container:
        assert [(s.type, s.codec_context.name, s.codec_context.sample_rate) for s in container.streams] == [
            ("audio", "aac", 48000)]

    mpd = MPEGDASHParser.parse(httpx.get(watched["stream"]["manifests"]["dash"]).text)
    sets = [a for a in mpd.periods[0].adaptation_sets if a.content_type == "audio"]
    assert [(a.lang, a.roles[0].value) for a in sets] == [("und", "main"), ("de", "dub")]
    assert sets[1].representations[0].codecs == "mp4a.40.2"


def test_choosing_the_dub_in_the_player_fetches_its_playlist(browser, platform, dubbed):  # noqa: F811
    page = new_page(browser, platform.gateway_url, DESKTOP)
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(f"/watch/{dubbed}")
    page.wait_for_selector("#start:enabled")
    page.click("#start")
    wait_player(page, "window.longtailPlayer.phase === 'content' && !document.querySelector('#content').paused",
                timeout=90_000)
    page.wait_for_selector("#audio-box:not([hidden])")
    assert page.eval_on_selector_all("#audio option", "os => os.map(o => o.textContent)") == [
        "Original", "Deutsch (dub)"]
    assert not [u for u in fetched if "/audio-de-dub-" in u]
    page.select_option("#audio", label="Deutsch (dub)")
    wait_player(page, "window.longtailPlayer.log.some(e => e.event === 'audio-switched' && e.id === 1)")
    assert any("/audio-de-dub-" in u and u.split("?")[0].endswith("/playlist.m3u8") for u in fetched), fetched
    eventually(lambda: fetched, lambda f: any("/audio-de-dub-" in u and ".m4s" in u for u in f), timeout_s=30)
    assert not [e for e in page.evaluate("window.longtailPlayer.log") if e["event"] == "hls-error" and e["fatal"]]
    page.context.close()


def test_delete_takes_the_dub_out(owner, dubbed):
    assert owner.delete(f"/v1/videos/{dubbed}/audio-tracks/de/dub").status_code == 204
    assert owner.delete(f"/v1/videos/{dubbed}/audio-tracks/de/dub").status_code == 404
    assert set(tracks(owner, dubbed)) == {("fr", "description")}
    watched = eventually(lambda: httpx.get(f"{owner.base_url}/v1/videos/{dubbed}/watch").json(),
                         lambda w: w["audio_tracks"] == [])
    master = m3u8.loads(httpx.get(watched["stream"]["manifests"]["hls"]).text)
    assert [m.language for m in master.media if m.type == "AUDIO"] == [None]
