"""Downloads and thumbnails without services: download tokens (one file, one grant, never a
stream token), the download rules, which rendition a download or a frame is cut from, the
segment covering a moment, the thumbnail parameters, and uploaded posters decoded (or
refused) by Pillow."""
from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from longtail.metadata.v1 import video_pb2
from longtail_common.config import Config
from longtail_common.ports import is_origin_only_media_key
from gateway.downloads import downloads_enabled, may_download
from gateway.errors import ApiError
from gateway.frames import pick_rendition as frame_rendition
from gateway.frames import segment_at
from gateway.routes.thumbnails import parse_time, parse_width, poster_from_upload, rounded, thumbnail_key
from gateway.signing import MediaGrant, PlaybackSigner, TokenRefused, is_download_key
from gateway.video_access import Actor  # noqa: F401 - the checks take any object with these two fields
from transcoder_svc.jobs.downloads import auto_downloads, download_key, pick_rendition

VID = "vidDownload1"
KEY = f"videos/{VID}/downloads/240p.mp4"


class Who:
    def __init__(self, account_id: str, admin: bool = False):
        self.account_id, self.admin = account_id, admin


def signer() -> PlaybackSigner:
    return PlaybackSigner(b"d" * 40, 3600, 600)


def test_a_download_token_opens_its_one_file_until_it_expires():
    s = signer()
    grant = s.media_grant(VID)
    token = s.download_token(grant, KEY)
    assert s.check_download(token, KEY) == grant
    refusals = {
        "tampered": lambda: s.check_download(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), KEY),
        "other file": lambda: s.check_download(token, f"videos/{VID}/downloads/audio.m4a"),
        "expired": lambda: s.check_download(token, KEY, now=grant.expires),
        "stream token": lambda: s.check_download(s.media_token(grant), KEY),
        "other secret": lambda: PlaybackSigner(b"e" * 40, 3600, 600).check_download(token, KEY),
    }
    for what, attempt in refusals.items():
        with pytest.raises(TokenRefused):
            attempt()
        print("refused:", what)


def test_a_stream_token_never_opens_a_download_and_a_private_one_names_its_account():
    s = signer()
    grant = MediaGrant(VID, int(time.time()) + 600, account="acct1")
    with pytest.raises(TokenRefused) as refused:
        s.check_media(s.media_token(grant), KEY, account="acct1")
    assert refused.value.reason == "wrong_kind"
    token = s.download_token(grant, KEY)
    assert s.check_download(token, KEY, account="acct1") == grant
    for account in (None, "acct2"):
        with pytest.raises(TokenRefused) as refused:
            s.check_download(token, KEY, account=account)
        assert refused.value.reason == "wrong_account"
    assert is_download_key(KEY) and not is_download_key(f"videos/{VID}/h264/master.m3u8")
    assert not is_download_key("videos/downloads/x")
    assert is_origin_only_media_key(KEY) and is_origin_only_media_key(f"videos/{VID}/thumbs/at/320/1000.jpg")
    assert not is_origin_only_media_key(f"videos/{VID}/thumbs/poster.jpg")
    assert not is_origin_only_media_key(f"videos/{VID}/h264/downloads/x.m4s")


def test_downloads_follow_the_owner_then_the_platform_default():
    cfg = Config()
    owner, other = Who("acct-owner"), Who("acct-other")
    video = video_pb2.Video(id=VID, channel=video_pb2.Channel(id="c", owner_account_id="acct-owner"))
    assert downloads_enabled(video, cfg) and may_download(video, None, cfg)
    cfg.downloads.allowed_by_default = False
    assert not may_download(video, other, cfg) and may_download(video, owner, cfg)
    assert may_download(video, Who("x", admin=True), cfg)
    video.download_policy = video_pb2.DOWNLOAD_POLICY_ALLOWED
    assert may_download(video, None, cfg)
    video.download_policy = video_pb2.DOWNLOAD_POLICY_DISABLED
    cfg.downloads.allowed_by_default = True
    assert not may_download(video, None, cfg) and may_download(video, owner, cfg)


def rendition(height: int, codec: str = "h264") -> video_pb2.Rendition:
    width = height * 16 // 9
    return video_pb2.Rendition(codec=codec, width=width, height=height, bitrate_bps=height * 1000,
                               object_key=f"videos/{VID}/{codec}/{height}p/playlist.m3u8")


def test_the_rendition_a_download_or_a_frame_comes_from():
    ladder = [rendition(h) for h in (720, 144, 360)] + [rendition(1080, "av1")]
    assert pick_rendition(ladder, 0).height == 720  # the top H.264 rung
    assert pick_rendition(ladder, 360).height == 360
    assert pick_rendition(ladder, 480).height == 360  # the largest below
    assert pick_rendition(ladder, 100).height == 144  # all taller: the smallest
    assert pick_rendition([rendition(1080, "av1")], 0) is None
    video = video_pb2.Video(id=VID, renditions=ladder)
    assert frame_rendition(video, 160).height == 144 and frame_rendition(video, 320).height == 360
    assert frame_rendition(video, 1920).height == 720
    assert download_key(VID, video_pb2.DOWNLOAD_KIND_MP4, 360) == f"videos/{VID}/downloads/360p.mp4"
    assert download_key(VID, video_pb2.DOWNLOAD_KIND_M4A, 0) == f"videos/{VID}/downloads/audio.m4a"
    cfg = Config()
    assert auto_downloads(cfg) == []
    cfg.downloads.auto_mp4_heights, cfg.downloads.auto_m4a = ["720"], True  # strings, as from the environment
    assert [(d.kind, d.height) for d in auto_downloads(cfg)] == [(video_pb2.DOWNLOAD_KIND_MP4, 720),
                                                                 (video_pb2.DOWNLOAD_KIND_M4A, 0)]


PLAYLIST = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="init_1.mp4"
#EXTINF:4.000000,
segment_00000.m4s
#EXTINF:4.000000,
segment_00001.m4s
#EXTINF:1.000000,
segment_00002.m4s
#EXT-X-ENDLIST
"""


def test_the_segment_covering_a_moment():
    key = f"videos/{VID}/h264/240p/playlist.m3u8"
    first, second, last = (segment_at(PLAYLIST, key, t) for t in (0.0, 4.0, 8.5))
    assert (first.key, first.start_s) == (f"videos/{VID}/h264/240p/segment_00000.m4s", 0.0)
    assert (second.key, second.start_s) == (f"videos/{VID}/h264/240p/segment_00001.m4s", 4.0)
    assert (last.key, last.start_s, last.duration_s) == (f"videos/{VID}/h264/240p/segment_00002.m4s", 8.0, 1.0)
    assert segment_at(PLAYLIST, key, 99).key == last.key  # past the end: the last one
    assert first.init_key == f"videos/{VID}/h264/240p/init_1.mp4"
    with pytest.raises(ApiError):
        segment_at("#EXTM3U\n#EXT-X-ENDLIST\n", key, 0)


def test_thumbnail_parameters_are_strict():
    cfg = Config()
    video = video_pb2.Video(id=VID, duration_seconds=9.0)
    assert parse_time("12", video_pb2.Video(duration_seconds=20)) == 12.0
    assert parse_time("2.125", video) == 2.125 and parse_time("9", video) == 9.0 and parse_time("0.5", video) == 0.5
    for bad in ("", "abc", "-1", "1e3", "+1", "1.2345", "9.001", " 1", "١", "nan", "inf", "1,5", "01", "1."):
        with pytest.raises(ApiError) as err:
            parse_time(bad, video)
        assert err.value.status == 400, bad
    assert parse_width("320", cfg) == 320
    for bad in ("", "33", "abc", "320.0", "03200", "-320", "99999", "٣٢٠", "0320"):
        with pytest.raises(ApiError) as err:
            parse_width(bad, cfg)
        assert err.value.status == 400, bad
    assert rounded(1.1, video, 0.5) == 1.0 and rounded(1.3, video, 0.5) == 1.5
    assert rounded(8.9, video_pb2.Video(duration_seconds=8.9), 0.5) == 8.5  # the grid never passes the end
    assert thumbnail_key(VID, 1.5, 320) == f"videos/{VID}/thumbs/at/320/1500.jpg"


def image_bytes(fmt: str, size=(64, 36), color=(200, 30, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt, **save)
    return out.getvalue()


def test_uploaded_posters_are_decoded_and_stored_as_jpeg():
    for fmt in ("PNG", "JPEG"):
        jpeg, width, height = poster_from_upload(image_bytes(fmt, (1920, 1080)), 4096)
        with Image.open(io.BytesIO(jpeg)) as stored:
            assert stored.format == "JPEG" and stored.size == (width, height) == (1280, 720)
    exif = Image.Exif()
    exif[0x010F] = "a camera maker"
    jpeg, _, _ = poster_from_upload(image_bytes("JPEG", exif=exif.tobytes()), 4096)
    assert b"a camera maker" not in jpeg  # metadata stays with the uploader
    whole = image_bytes("PNG", (200, 200), (1, 2, 3))
    refused = {
        "not an image": b"GIF89a not really" + bytes(100),
        "truncated": whole[: len(whole) // 2],
        "GIF": image_bytes("GIF"),
        "too small": image_bytes("PNG", (8, 8)),
        "too large": image_bytes("PNG", (5000, 20)),
        "empty": b"",
    }
    for what, data in refused.items():
        with pytest.raises(ApiError) as err:
            poster_from_upload(data, 4096)
        assert err.value.status == 400, what


def test_download_files_and_cut_thumbnails_stay_at_the_origin(tmp_path):
    from longtail_common.adapters import make_object_store
    from longtail_common.ports import MEDIA_BUCKET
    from placement_svc import edge

    objects = make_object_store(Config(data_dir=str(tmp_path)))
    objects.ensure_bucket(MEDIA_BUCKET)
    kept = [f"videos/{VID}/h264/master.m3u8", f"videos/{VID}/thumbs/poster.jpg", f"videos/{VID}/thumbs/preview.webp"]
    for key in kept + [KEY, f"videos/{VID}/thumbs/at/160/1000.jpg", f"videos/{VID}/_ladder.json"]:
        objects.put_bytes(MEDIA_BUCKET, key, b"x")
    assert edge.video_keys(objects, VID) == sorted(kept)  # what an edge push copies and the CDN cost counts
