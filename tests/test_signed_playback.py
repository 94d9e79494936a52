"""Signed playback without services: the tokens (gateway/signing.py), the beacon ledger
(gateway/beacons.py), the data dir's secret, and the origin and edge routes on the
embedded object store refusing unsigned, tampered, expired and other-video requests (403)
for every kind of media object.
"""
from __future__ import annotations

import os
import stat
import time

import pytest
from fastapi.testclient import TestClient

from longtail.metadata.v1 import video_pb2
from longtail_common.adapters import make_object_store
from longtail_common.config import Config
from longtail_common.ports import EDGE_BUCKET_PREFIX, MEDIA_BUCKET
from gateway.app import create_app
from gateway.beacons import NON_MEDIA_BYTES, BeaconRefused, Charge, PlaybackLedger, playback_byte_bound
from gateway.signing import MediaGrant, PlaybackSigner, TokenRefused, playback_secret

SECRET = b"s" * 40
VID, OTHER = "vidSigned01", "vidOther002"
# One object of every kind a player fetches: manifests, init and media segments, images.
OBJECTS = {
    "h264/master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000\n240p/index.m3u8\n",
    "h264/manifest.mpd": b"<MPD/>",
    "h264/240p/index.m3u8": b"#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.0,\nseg0.m4s\n#EXT-X-ENDLIST\n",
    "h264/240p/init.mp4": b"\x00" * 64,
    "h264/240p/seg0.m4s": bytes(range(256)) * 8,
    "poster.jpg": b"\xff\xd8poster",
    "storyboard.jpg": b"\xff\xd8sprite",
    "storyboard.vtt": b"WEBVTT\n",
}


def signer(ttl_s: int = 3600, window_s: int = 600) -> PlaybackSigner:
    return PlaybackSigner(SECRET, ttl_s, window_s)


def test_media_tokens_cover_one_video_until_they_expire():
    s = signer()
    grant = s.media_grant(VID, now=1_000_000)
    assert grant.expires % 600 == 0 and 1_000_000 + 3600 <= grant.expires < 1_000_000 + 3600 + 600
    token = s.media_token(grant)
    assert s.check_media(token, f"videos/{VID}/h264/master.m3u8", now=1_000_000) == grant
    refusals = {
        "tampered": lambda: s.check_media(token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
                                          f"videos/{VID}/poster.jpg", now=1_000_000),
        "expired": lambda: s.check_media(token, f"videos/{VID}/poster.jpg", now=grant.expires),
        "other video": lambda: s.check_media(token, f"videos/{OTHER}/poster.jpg", now=1_000_000),
        "other secret": lambda: PlaybackSigner(b"t" * 40, 3600, 600).check_media(
            token, f"videos/{VID}/poster.jpg", now=1_000_000),
        "empty": lambda: s.check_media("", f"videos/{VID}/poster.jpg"),
    }
    for what, attempt in refusals.items():
        with pytest.raises(TokenRefused):
            attempt()
        print("refused:", what)


def test_public_tokens_name_nobody_and_are_one_per_window():
    s = signer()
    early, late = s.media_grant(VID, now=1_200_001), s.media_grant(VID, now=1_200_001 + 500)
    assert early == late and early.account is None
    assert s.media_token(early) == PlaybackSigner(SECRET, 3600, 600).media_token(late)  # any gateway, any viewer
    assert s.media_token(s.media_grant(VID, now=1_200_001 + 700)) != s.media_token(early)  # next window


def test_a_token_naming_an_account_passes_for_that_account_only():
    s = signer()
    grant = MediaGrant(VID, int(time.time()) + 600, account="acct1")
    token = s.media_token(grant)
    assert s.check_media(token, f"videos/{VID}/poster.jpg", account="acct1") == grant
    for account in (None, "acct2"):
        with pytest.raises(TokenRefused) as refused:
            s.check_media(token, f"videos/{VID}/poster.jpg", account=account)
        assert refused.value.reason == "wrong_account"


def test_playback_ids_are_their_own_kind_of_token():
    s = signer()
    token, playback = s.issue_playback(VID, "JP", now=1_000_000)
    assert s.check_playback(token, now=1_000_000) == playback and playback.region == "JP"
    assert s.issue_playback(VID, "JP", now=1_000_000)[1].nonce != playback.nonce  # one per watch call
    with pytest.raises(TokenRefused, match="expired"):
        s.check_playback(token, now=playback.expires)
    media = s.media_token(s.media_grant(VID))
    with pytest.raises(TokenRefused):
        s.check_playback(media)  # a stream URL's token is no playback id...
    with pytest.raises(TokenRefused):
        s.check_media(token, f"videos/{VID}/poster.jpg", now=1_000_000)  # ...nor the reverse


def test_playback_ids_are_signed_as_itsdangerous_signs_them_with_fresh_nonces():
    """The watch call signs ids with the HMAC directly (gateway/signing.py): the same token
    itsdangerous makes of the same claims, and 12-character nonces, none repeated across
    refills of the random pool."""
    s = signer()
    nonces = set()
    for _ in range(1000):
        token, playback = s.issue_playback(VID, "US", now=1_000_000)
        nonces.add(playback.nonce)
        claims = {"v": VID, "r": "US", "e": playback.expires, "n": playback.nonce}
        assert token == s._playback.dumps(claims)
    assert len(nonces) == 1000 and {len(n) for n in nonces} == {12}


def test_the_data_dir_secret_is_made_once_private_and_shared(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    first = playback_secret(cfg)
    path = tmp_path / "playback.secret"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) >= 32
    assert playback_secret(Config(data_dir=str(tmp_path))) == first  # a second gateway process
    assert [p.name for p in tmp_path.iterdir()] == ["playback.secret"]
    cfg.playback.secret = "x" * 40
    assert playback_secret(cfg) == b"x" * 40
    cfg.playback.secret = "short"
    with pytest.raises(ValueError):
        playback_secret(cfg)


def test_a_shared_secret_file_serves_gateways_with_their_own_data_dirs(tmp_path):
    # The fleet: gateway containers with data dirs of their own, one file on a shared volume.
    shared = tmp_path / "shared" / "playback.secret"
    one, two = (Config(data_dir=str(tmp_path / name)) for name in ("one", "two"))
    for cfg in (one, two):
        cfg.playback.secret_file = str(shared)
    assert playback_secret(one) == playback_secret(two) == shared.read_bytes().strip()
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o600
    assert not (tmp_path / "one").exists() and not (tmp_path / "two").exists()


def test_beacon_ledger_counts_one_start_and_bounded_bytes():
    s = signer()
    video = video_pb2.Video(id=VID, duration_seconds=10.0, renditions=[
        video_pb2.Rendition(bitrate_bps=800_000), video_pb2.Rendition(bitrate_bps=400_000)])
    bound = playback_byte_bound(video)
    assert bound == 1_200_000 * 10 // 8 + NON_MEDIA_BYTES
    _, playback = s.issue_playback(VID, "US")
    ledger = PlaybackLedger(100)
    ledger.record(ledger.admit([Charge(playback, "start", 1000, bound)]))
    with pytest.raises(BeaconRefused) as refused:
        ledger.admit([Charge(playback, "start", 0, bound)])
    assert (refused.value.status, refused.value.reason) == (409, "repeat")
    before = ledger.record(ledger.admit([Charge(playback, "progress", bound - 1000, bound)]))
    with pytest.raises(BeaconRefused) as refused:
        ledger.admit([Charge(playback, "complete", 1, bound)])
    assert refused.value.reason == "too_many_bytes"
    ledger.restore(before)  # as if that progress beacon had not been published
    ledger.record(ledger.admit([Charge(playback, "complete", 1, bound)]))
    # Within one batch too: two starts of one playback are refused together.
    _, fresh = s.issue_playback(VID, "US")
    with pytest.raises(BeaconRefused):
        ledger.admit([Charge(fresh, "start", 0, bound), Charge(fresh, "start", 0, bound)])


@pytest.fixture()
def media_app(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    cfg.playback.secret = SECRET.decode()
    objects = make_object_store(cfg)
    for bucket in (MEDIA_BUCKET, f"{EDGE_BUCKET_PREFIX}jp"):
        objects.ensure_bucket(bucket)
        for video_id in (VID, OTHER):
            for name, data in OBJECTS.items():
                objects.put_bytes(bucket, f"videos/{video_id}/{name}", data)
    return cfg, TestClient(create_app(cfg))


@pytest.mark.parametrize("name", sorted(OBJECTS))
@pytest.mark.parametrize("prefix", ["/origin", "/edge/JP"])
def test_every_media_object_needs_a_valid_signature(media_app, prefix, name):
    cfg, client = media_app
    s = PlaybackSigner(SECRET, cfg.playback.ttl_s, cfg.playback.window_s)
    key = f"videos/{VID}/{name}"
    good = s.media_token(s.media_grant(VID))
    expired = s.media_token(MediaGrant(VID, int(time.time()) - 1))
    other = s.media_token(s.media_grant(OTHER))
    forged = PlaybackSigner(b"f" * 40, 3600, 600).media_token(s.media_grant(VID))
    tampered = good[:-3] + ("xyz" if not good.endswith("xyz") else "abc")
    ok = client.get(f"{prefix}/t/{good}/{key}")
    assert ok.status_code == 200 and ok.content == OBJECTS[name]
    assert client.get(f"{prefix}/t/{good}/{key}", headers={"Range": "bytes=0-1"}).status_code == 206
    for url in (f"{prefix}/{key}", f"{prefix}/t/{tampered}/{key}", f"{prefix}/t/{expired}/{key}",
                f"{prefix}/t/{other}/{key}", f"{prefix}/t/{forged}/{key}", f"{prefix}/t//{key}"):
        for method in ("GET", "HEAD"):
            resp = client.request(method, url)
            assert resp.status_code == 403, (method, url, resp.status_code)
        assert client.get(url).json()["error"]["code"] in ("SIGNATURE_REQUIRED", "SIGNATURE_INVALID")
    # A valid token for a missing object is a plain 404; before the token, nothing is said.
    assert client.get(f"{prefix}/t/{good}/videos/{VID}/nothing.m4s").status_code == 404
    assert client.get(f"{prefix}/videos/{VID}/nothing.m4s").status_code == 403


def test_relative_uris_inside_a_signed_playlist_keep_the_signature(media_app):
    cfg, client = media_app
    s = PlaybackSigner(SECRET, cfg.playback.ttl_s, cfg.playback.window_s)
    base = f"http://testserver/origin/t/{s.media_token(s.media_grant(VID))}/videos/{VID}/h264/"
    master = client.get(base + "master.m3u8")
    variant = next(line for line in master.text.splitlines() if line and not line.startswith("#"))
    playlist = client.get(base + variant)  # resolved as a player does: relative to the master's URL
    assert playlist.status_code == 200
    assert client.get(base + "240p/init.mp4").status_code == 200
    assert client.get(base + "240p/seg0.m4s").status_code == 200


def test_signing_off_serves_unsigned_paths(tmp_path):
    cfg = Config(data_dir=str(tmp_path))
    cfg.playback.signed = False
    objects = make_object_store(cfg)
    objects.ensure_bucket(MEDIA_BUCKET)
    objects.put_bytes(MEDIA_BUCKET, f"videos/{VID}/poster.jpg", b"\xff\xd8")
    client = TestClient(create_app(cfg))
    assert client.get(f"/origin/videos/{VID}/poster.jpg").status_code == 200


def test_an_edge_verifies_a_media_token_with_the_derived_key_alone():
    """The format README documents for CDN edge functions: payload "." HMAC-SHA256 under
    SHA-256("longtail.media" + "signer" + secret), with no library of ours."""
    import base64
    import hashlib
    import hmac
    import json

    s = signer()
    grant = s.media_grant(VID)
    payload, signature = s.media_token(grant).rsplit(".", 1)
    edge_key = hashlib.sha256(b"longtail.media" + b"signer" + SECRET).digest()
    expected = base64.urlsafe_b64encode(hmac.new(edge_key, payload.encode(), hashlib.sha256).digest()).rstrip(b"=")
    assert hmac.compare_digest(expected.decode(), signature)
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == {"v": VID, "e": grant.expires}
