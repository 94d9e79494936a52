"""Downloads and thumbnails on a running platform (embedded backends, one transcoder): an
M4A made for every video by config and an MP4 asked for by the owner, both remuxed by the
transcoder and listed in the watch payload; the files probe right (duration, streams, moov
before mdat) and come only under their own signed URL, only while the owner allows
downloads; thumbnails at a time are cut once and then read back from the object store;
the poster is picked by time or uploaded; the home page's cards play the animated preview
on hover (headless Chromium, when installed)."""
from __future__ import annotations

import io
import shutil
import struct
import time

import av
import httpx
import pytest
from PIL import Image

from longtail_cli.cli import make_test_clip, upload_file, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.adapters import make_object_store
from longtail_common.config import Config
from longtail_common.ports import MEDIA_BUCKET
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow

SECONDS = 6
READY_TIMEOUT_S = 300  # an upper bound on a busy 2-core machine, not a target
OWNER, OTHER = "dl-owner", "dl-other"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("downloads")))
    cfg.downloads.auto_m4a = True  # every video gets its M4A (Mux's static renditions); MP4s on request
    cfg.thumbnails.max_poster_bytes = 200_000
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def owner(platform):
    with httpx.Client(base_url=platform.gateway_url, headers=bearer(platform.cfg, OWNER), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def other(platform):
    with httpx.Client(base_url=platform.gateway_url, headers=bearer(platform.cfg, OTHER), timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def video_id(platform, owner, tmp_path_factory) -> str:
    clip = tmp_path_factory.mktemp("clip") / "clip.mp4"
    make_test_clip(str(clip), seconds=SECONDS, height=240)
    vid = upload_file(owner, platform.gateway_url, str(clip), "Downloadable clip", "dl-channel")
    assert wait_ready(owner, platform.gateway_url, vid, timeout_s=READY_TIMEOUT_S)["status"] == "READY"
    return vid


def eventually(fetch, check, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout_s} s: {value}"
        time.sleep(0.5)


def downloads(client: httpx.Client, vid: str) -> dict:
    watched = client.get(f"/v1/videos/{vid}/watch")
    assert watched.status_code == 200, watched.text
    return {(d["kind"], d["height"]): d for d in watched.json()["downloads"]}


def top_level_boxes(data: bytes) -> list[str]:
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        at += size
    return boxes


def probe(data: bytes) -> tuple[float, list[str]]:
    with av.open(io.BytesIO(data)) as container:
        return container.duration / 1e6, sorted(f"{s.type}:{s.codec_context.name}" for s in container.streams)


def test_an_m4a_for_every_video_and_an_mp4_on_request(platform, owner, video_id):
    m4a = eventually(lambda: downloads(owner, video_id), lambda d: ("m4a", None) in d)[("m4a", None)]
    made = owner.post(f"/v1/videos/{video_id}/downloads", json={"kind": "mp4", "height": 240})
    assert made.status_code == 202, made.text
    assert made.json() == {"status": "PREPARING", "kind": "mp4", "height": 240}
    listed = eventually(lambda: owner.get(f"/v1/videos/{video_id}/downloads").json()["downloads"],
                        lambda d: any(x["kind"] == "mp4" for x in d))
    mp4 = next(x for x in listed if x["kind"] == "mp4")
    assert mp4["height"] == 240 and mp4["size_bytes"] > 0
    again = owner.post(f"/v1/videos/{video_id}/downloads", json={"kind": "mp4", "height": 240})
    assert again.status_code == 200 and again.json()["status"] == "READY"
    for body in ({"kind": "mp4", "height": 1080}, {"kind": "m4a", "height": 240}):
        assert owner.post(f"/v1/videos/{video_id}/downloads", json=body).status_code == 400
    assert owner.post(f"/v1/videos/{video_id}/downloads", json={"kind": "webm"}).status_code == 422

    got = httpx.get(mp4["url"], timeout=60)  # anonymous: a public video's files are anyone's to fetch
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"] == f'attachment; filename="{video_id}-240p.mp4"'
    assert len(got.content) == mp4["size_bytes"]
    boxes = top_level_boxes(got.content)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: plays while it downloads
    duration, streams = probe(got.content)
    assert abs(duration - SECONDS) < 0.5 and streams == ["audio:aac", "video:h264"], (duration, streams)
    with av.open(io.BytesIO(got.content)) as container:
        assert container.streams.video[0].codec_context.height == 240

    audio = httpx.get(m4a["url"], timeout=60)
    assert audio.status_code == 200 and audio.headers["content-disposition"].endswith('-audio.m4a"')
    duration, streams = probe(audio.content)
    assert streams == ["audio:aac"] and abs(duration - SECONDS) < 0.5, (duration, streams)
    assert top_level_boxes(audio.content).index("moov") < top_level_boxes(audio.content).index("mdat")
    ranged = httpx.get(mp4["url"], headers={"Range": "bytes=0-99"}, timeout=60)
    assert ranged.status_code == 206 and len(ranged.content) == 100


def test_download_urls_are_refused_when_tampered_or_borrowed(platform, owner, other, video_id):
    files = eventually(lambda: downloads(owner, video_id), lambda d: ("mp4", 240) in d)
    url = files[("mp4", 240)]["url"]
    token = url.split("/dl/t/", 1)[1].split("/", 1)[0]
    tampered = url.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert httpx.get(tampered, timeout=30).status_code == 403
    other_file = url.replace("240p.mp4", "audio.m4a")  # a genuine token, for another file
    assert httpx.get(other_file, timeout=30).status_code == 403
    # A stream URL's token covers the whole video, but never its download files.
    stream = owner.get(f"/v1/videos/{video_id}/watch").json()["stream"]["url"]
    borrowed = stream.split("/videos/", 1)[0] + f"/videos/{video_id}/downloads/240p.mp4"
    refused = httpx.get(borrowed, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["reason"] == "wrong_kind"
    assert other.post(f"/v1/videos/{video_id}/downloads", json={"kind": "m4a"}).status_code == 403


def test_the_owner_can_disable_downloads(platform, owner, other, video_id):
    url = eventually(lambda: downloads(other, video_id), lambda d: ("mp4", 240) in d)[("mp4", 240)]["url"]
    edited = owner.patch(f"/v1/videos/{video_id}", json={"downloads_enabled": False})
    assert edited.status_code == 200 and edited.json()["downloads_enabled"] is False
    try:
        assert downloads(other, video_id) == {}  # the watch payload lists none
        assert other.get(f"/v1/videos/{video_id}/downloads").status_code == 403
        refused = httpx.get(url, timeout=30)  # a URL handed out before: refused now
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "DOWNLOADS_DISABLED"
        mine = downloads(owner, video_id)  # its owner still may
        assert ("mp4", 240) in mine and owner.get(mine[("mp4", 240)]["url"]).status_code == 200
    finally:
        assert owner.patch(f"/v1/videos/{video_id}", json={"downloads_enabled": True}).status_code == 200
    assert httpx.get(url, timeout=30).status_code == 200


def test_thumbnails_at_a_time_are_cut_once_then_read_back(platform, owner, video_id):
    first = httpx.get(f"{platform.gateway_url}/v1/videos/{video_id}/thumbnail.jpg?time=1&width=160", timeout=60)
    later = httpx.get(f"{platform.gateway_url}/v1/videos/{video_id}/thumbnail.jpg?time=4.5&width=160", timeout=60)
    for response in (first, later):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "public, max-age=3600"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == "JPEG" and image.width == 160
    assert first.content != later.content  # two moments of a moving picture
    objects = make_object_store(platform.cfg)
    key = f"videos/{video_id}/thumbs/at/160/1000.jpg"
    assert objects.get_bytes(MEDIA_BUCKET, key) == first.content
    # Replace the stored image: if the next call cut the frame again, it would not answer this.
    marker = io.BytesIO()
    Image.new("RGB", (160, 90), (0, 255, 0)).save(marker, "JPEG")
    objects.put_bytes(MEDIA_BUCKET, key, marker.getvalue(), "image/jpeg")
    for asked in ("1", "1.1", "0.85"):  # the same point of the 0.5 s grid
        again = owner.get(f"/v1/videos/{video_id}/thumbnail.jpg?time={asked}&width=160")
        assert again.status_code == 200 and again.content == marker.getvalue(), asked


@pytest.mark.parametrize("query", ["time=abc", "time=-1", "time=1e3", "time=99999", "time=1.2345", "width=33",
                                   "width=abc", "width=320.5", "width=0320", "time=1&width=99999"])
def test_bad_thumbnail_parameters_are_400(platform, video_id, query):
    response = httpx.get(f"{platform.gateway_url}/v1/videos/{video_id}/thumbnail.jpg?{query}", timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_ARGUMENT"


def poster_of(video: dict) -> dict:
    return next(t for t in video["thumbnails"] if t["kind"] == "poster")


def test_the_poster_is_picked_by_time_or_uploaded(platform, owner, other, video_id):
    before = poster_of(owner.get(f"/v1/videos/{video_id}").json())
    picked = owner.put(f"/v1/videos/{video_id}/poster?time=3")
    assert picked.status_code == 200, picked.text
    poster = poster_of(picked.json())
    assert "/thumbs/poster-" in poster["url"] and poster["url"] != before["url"]
    assert (poster["width"], poster["height"]) == (426, 240)
    image = httpx.get(poster["url"], timeout=30)
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    png = io.BytesIO()
    Image.new("RGB", (640, 360), (10, 20, 200)).save(png, "PNG")
    uploaded = owner.post(f"/v1/videos/{video_id}/poster", content=png.getvalue(),
                          headers={"Content-Type": "image/png"})
    assert uploaded.status_code == 200, uploaded.text
    mine = poster_of(uploaded.json())
    assert (mine["width"], mine["height"]) == (640, 360)
    # Seen by everyone at once (this gateway's cache was dropped; the others hear video.changed).
    assert poster_of(other.get(f"/v1/videos/{video_id}").json())["url"].split("?")[0].endswith(
        mine["url"].split("?")[0].rsplit("/", 1)[-1])
    with Image.open(io.BytesIO(httpx.get(mine["url"], timeout=30).content)) as stored:
        assert stored.format == "JPEG" and stored.getpixel((5, 5))[2] > 150  # the uploaded blue
    refusals = [
        (dict(content=b"\x89PNG\r\n\x1a\n broken", headers={"Content-Type": "image/png"}), 400),
        (dict(content=b"hello", headers={"Content-Type": "text/plain"}), 415),
        (dict(content=bytes(300_000), headers={"Content-Type": "image/jpeg"}), 413),
        (dict(), 400),
    ]
    for request, status in refusals:
        assert owner.put(f"/v1/videos/{video_id}/poster", **request).status_code == status, (request.keys(), status)
    both = owner.put(f"/v1/videos/{video_id}/poster?time=1", content=png.getvalue(),
                     headers={"Content-Type": "image/png"})
    assert both.status_code == 400
    assert owner.put(f"/v1/videos/{video_id}/poster?time=1e9").status_code == 400
    assert other.put(f"/v1/videos/{video_id}/poster?time=1").status_code == 403


def test_a_private_videos_files_are_its_owners(platform, owner, other, video_id):
    public_url = eventually(lambda: downloads(owner, video_id), lambda d: ("m4a", None) in d)[("m4a", None)]["url"]
    assert owner.patch(f"/v1/videos/{video_id}", json={"privacy": "private"}).status_code == 200
    try:
        assert httpx.get(public_url, timeout=30).status_code == 403  # issued while public: not any more
        for path in ("thumbnail.jpg?time=1&width=160", "downloads", "preview.webp"):
            assert other.get(f"/v1/videos/{video_id}/{path}").status_code == 404, path
        assert other.post(f"/v1/videos/{video_id}/downloads", json={"kind": "m4a"}).status_code == 404
        url = downloads(owner, video_id)[("m4a", None)]["url"]  # issued to the owner
        assert owner.get(url).status_code == 200
        assert httpx.get(url, timeout=30).status_code == 403 and other.get(url).status_code == 403
        private = owner.get(f"/v1/videos/{video_id}/thumbnail.jpg?time=2&width=160")
        assert private.status_code == 200 and private.headers["cache-control"] == "private, max-age=3600"
    finally:
        assert owner.patch(f"/v1/videos/{video_id}", json={"privacy": "public"}).status_code == 200


def test_the_preview_is_a_short_looping_animation(platform, owner, video_id):
    video = owner.get(f"/v1/videos/{video_id}").json()
    assert any(t["kind"] == "preview" for t in video["thumbnails"])
    redirect = httpx.get(f"{platform.gateway_url}/v1/videos/{video_id}/preview.webp", timeout=30)
    assert redirect.status_code == 302
    animation = httpx.get(redirect.headers["location"], timeout=30)
    assert animation.status_code == 200 and animation.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(animation.content)) as image:
        assert image.format == "WEBP" and image.is_animated and image.n_frames >= 10
        assert image.width == 320 and image.info.get("loop") == 0


def test_home_cards_play_the_preview_on_hover(platform, video_id):
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if not executable:
        pytest.skip("chromium or playwright is not installed (tests/test_browser_pages.py has the setup)")
    eventually(lambda: httpx.get(f"{platform.gateway_url}/v1/latest", timeout=30).json(),
               lambda latest: any(v.get("id", v.get("video_id")) == video_id for v in latest.get("videos", [])))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(base_url=platform.gateway_url)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto("/")
            card = page.locator(f'.card[data-preview="/v1/videos/{video_id}/preview.webp"]')
            assert card.locator("img.preview").count() == 0  # nothing fetched before a hover
            card.hover()
            preview = card.locator("img.preview")
            preview.wait_for(state="visible", timeout=30_000)
            assert page.evaluate("(img) => img.naturalWidth", preview.element_handle()) == 320
            page.mouse.move(0, 0)
            preview.wait_for(state="hidden", timeout=10_000)
            assert errors == []
        finally:
            browser.close()
