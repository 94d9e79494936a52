"""Privacy levels, edits and deletes end to end through the REST API, on the embedded
backends with every service a process: who sees what at each privacy level (listings,
latest, search and its index, reads, watch, media, the watch page), PATCH with update
mask and etag, and DELETE leaving nothing behind in any bucket, edge, index or count --
even when it lands while the video is being transcoded."""
from __future__ import annotations

import sqlite3
import time

import httpx
import pytest

from longtail.transcoder.v1 import transcoder_service_pb2 as tpb
from longtail.transcoder.v1 import transcoder_service_pb2_grpc as tpb_grpc
from longtail_cli.cli import make_test_clip, wait_ready
from longtail_cli.launcher import Platform, free_port
from longtail_common.adapters import make_object_store, make_view_count_store
from longtail_common.adapters.fs_objects import FilesystemObjectStore
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from longtail_common.ports import EDGE_BUCKET_PREFIX, MEDIA_BUCKET, RAW_BUCKET, STAGING_BUCKET
from placement_svc import edge
from tests.auth_helpers import bearer

pytestmark = pytest.mark.slow

TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail")))
    with Platform(cfg, gateway_port=free_port(), transcoder_workers=1) as p:
        yield p


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("clips")
    made = {"short": (4, 240), "long": (20, 720)}
    for name, (seconds, height) in made.items():
        make_test_clip(str(folder / f"{name}.mp4"), seconds=seconds, height=height)
    return {name: str(folder / f"{name}.mp4") for name in made}


@pytest.fixture(scope="module")
def who(platform) -> dict[str, httpx.Client]:
    """Clients: the uploader (owner), another account, an admin, and anonymous."""
    clients = {name: httpx.Client(timeout=60, headers=bearer(platform.cfg, name, admin=name == "admin"))
               for name in ("owner", "other", "admin")}
    clients["anonymous"] = httpx.Client(timeout=60)
    yield clients
    for client in clients.values():
        client.close()


def upload(client: httpx.Client, base: str, path: str, title: str, channel: str = "owned") -> str:
    data = open(path, "rb").read()
    resp = client.post(f"{base}/v1/videos", json={"title": title, "channel_id": channel, "size_bytes": len(data)})
    assert resp.status_code == 201, resp.text
    resp2 = client.patch(resp.json()["upload_url"], content=data,
                         headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert resp2.status_code == 204, resp2.text
    return resp.json()["id"]


def eventually(check, timeout_s: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def indexed(platform, vid: str) -> bool:
    with sqlite3.connect(platform.cfg.data_path / "search" / "index.sqlite3") as db:
        return db.execute("SELECT 1 FROM videos WHERE video_id = ?", (vid,)).fetchone() is not None


def counted(platform, vid: str) -> bool:
    """Whether placement's view-count store (SQLite or Scylla, as configured) still has the
    video's views or its catalogue entry."""
    store = make_view_count_store(platform.cfg)
    try:
        return store.total_views([vid])[vid] > 0 or vid in set(store.catalogue_columns().video_id.tolist())
    finally:
        store.close()


def leftovers(platform, vid: str) -> list[str]:
    """Every object anywhere that belongs to the video: raw, staging, media, every region's
    edge (on the platform's own object store: the filesystem or S3)."""
    objects = make_object_store(platform.cfg)
    if isinstance(objects, FilesystemObjectStore):  # every bucket there is, edges included
        buckets = [p.name for p in (platform.cfg.data_path / "objects").iterdir() if not p.name.startswith(".")]
        assert {RAW_BUCKET, STAGING_BUCKET, MEDIA_BUCKET} <= set(buckets)
    else:
        buckets = [MEDIA_BUCKET, *(edge.edge_bucket(r) for r in platform.cfg.platform.regions)]
    found = [f"{b}/{k}" for b in (RAW_BUCKET, STAGING_BUCKET) for k in objects.list_keys(b, f"{vid}/")]
    found += [f"{b}/{k}" for b in buckets if b == MEDIA_BUCKET or b.startswith(EDGE_BUCKET_PREFIX)
              for k in objects.list_keys(b, f"videos/{vid}/")]
    return found + [f"multipart {k}" for k, _ in objects.list_multipart_uploads(RAW_BUCKET, f"{vid}/")]


def visible_in(client: httpx.Client, base: str, vid: str, title_word: str) -> dict[str, bool]:
    latest = client.get(f"{base}/v1/latest", params={"page_size": 100}).json()["videos"]
    found = client.get(f"{base}/v1/search", params={"q": title_word}).json()["videos"]
    listed = client.get(f"{base}/v1/videos", params={"channel_id": "owned", "page_size": 100}).json()["videos"]
    page = client.get(f"{base}/channel/owned")
    assert page.status_code == 200
    return {"latest": any(v["id"] == vid for v in latest), "search": any(v["id"] == vid for v in found),
            "channel": any(v["id"] == vid for v in listed), "channel_page": f'href="/watch/{vid}"' in page.text}


def edit(client: httpx.Client, base: str, vid: str, etag: str | None = None, **fields) -> httpx.Response:
    return client.patch(f"{base}/v1/videos/{vid}", json={**fields, **({"etag": etag} if etag else {})})


def test_privacy_levels_and_edits(platform, who, clips):
    base, owner, other, admin, anon = platform.gateway_url, who["owner"], who["other"], who["admin"], who["anonymous"]
    vid = upload(owner, base, clips["short"], "Quokka picnic")
    video = wait_ready(owner, base, vid, timeout_s=240)
    assert video["status"] == "READY" and video["privacy"] == "public"
    eventually(lambda: all(visible_in(anon, base, vid, "quokka").values()), what="published everywhere")

    # Edits: owner only (401 anonymous, 403 another account), a stale etag is a conflict.
    assert edit(anon, base, vid, title="x").status_code == 401
    assert edit(other, base, vid, title="x").status_code == 403
    stale = edit(owner, base, vid, etag="0" * 16, title="x")
    assert stale.status_code == 409 and stale.json()["error"]["etag"] == video["etag"]
    assert owner.patch(f"{base}/v1/videos/{vid}", params={"update_mask": "status"}, json={}).status_code == 400
    resp = edit(owner, base, vid, etag=video["etag"], privacy="unlisted", title="Quokka picnic, unlisted")
    assert resp.status_code == 200, resp.text
    assert resp.json()["privacy"] == "unlisted" and resp.json()["etag"] != video["etag"]
    # Unlisted: plays by link for anyone, listed and searched nowhere, from now on.
    assert visible_in(anon, base, vid, "quokka") == {"latest": False, "search": False, "channel": False,
                                                     "channel_page": False}
    eventually(lambda: not indexed(platform, vid), what="the index entry to go")
    assert anon.get(f"{base}/v1/videos/{vid}").status_code == 200
    assert anon.get(f"{base}/v1/videos/{vid}/watch").status_code == 200

    # Private: its owner and admins only; anyone else gets 404, as for no video at all.
    masked = owner.patch(f"{base}/v1/videos/{vid}", params={"update_mask": "privacy"},
                         json={"privacy": "private", "title": "ignored: not in the mask"})
    assert masked.status_code == 200 and masked.json()["title"] == "Quokka picnic, unlisted"
    for client in (anon, other):
        assert client.get(f"{base}/v1/videos/{vid}").status_code == 404
        assert client.get(f"{base}/v1/videos/{vid}/watch").status_code == 404
        assert edit(client, base, vid, title="x").status_code == (401 if client is anon else 404)
    assert other.get(f"{base}/watch/{vid}").status_code == 404
    page = anon.get(f"{base}/watch/{vid}")
    assert page.status_code == 401 and f"/account/sign-in?next=%2Fwatch%2F{vid}" in page.text
    assert admin.get(f"{base}/v1/videos/{vid}").status_code == 200
    watch = owner.get(f"{base}/v1/videos/{vid}/watch")
    assert watch.status_code == 200
    manifest = watch.json()["stream"]["url"]
    assert owner.get(manifest).status_code == 200
    assert anon.get(manifest).status_code == 403 and other.get(manifest).status_code == 403
    assert owner.get(f"{base}/watch/{vid}").status_code == 200

    # The owner's listing shows it when asked; nobody else may ask.
    params = {"channel_id": "owned", "include_non_public": "true"}
    assert any(v["id"] == vid for v in owner.get(f"{base}/v1/videos", params=params).json()["videos"])
    assert other.get(f"{base}/v1/videos", params=params).status_code == 403
    assert anon.get(f"{base}/v1/videos", params=params).status_code == 401

    # Public again: everywhere at once, search index included.
    assert edit(owner, base, vid, privacy="public").status_code == 200
    eventually(lambda: all(visible_in(anon, base, vid, "unlisted").values()), what="public again")
    eventually(lambda: indexed(platform, vid), what="re-indexed")


def test_delete_removes_everything(platform, who, clips):
    base, owner, other, anon = platform.gateway_url, who["owner"], who["other"], who["anonymous"]
    vid = upload(owner, base, clips["short"], "Wombat burrow")
    video = wait_ready(owner, base, vid, timeout_s=240)
    watch = anon.get(f"{base}/v1/videos/{vid}/watch", params={"region": "JP"}).json()
    beacon = anon.post(f"{base}/v1/videos/{vid}/views", json={"kind": "start", "bytes": 0,
                                                                 "playback_id": watch["playback"]["id"]})
    assert beacon.status_code == 202, beacon.text
    objects = FilesystemObjectStore(platform.cfg.data_path / "objects")
    for region in ("JP", "US"):  # as the daily job pushes a popular video to the CDN
        edge.push(objects, vid, region)
    eventually(lambda: counted(platform, vid) and indexed(platform, vid), what="counted and indexed")
    assert leftovers(platform, vid)

    assert anon.delete(f"{base}/v1/videos/{vid}").status_code == 401
    assert other.delete(f"{base}/v1/videos/{vid}").status_code == 403
    assert owner.delete(f"{base}/v1/videos/{vid}", headers={"If-Match": '"0000"'}).status_code == 409
    resp = owner.delete(f"{base}/v1/videos/{vid}", headers={"If-Match": f'"{video["etag"]}"'})
    assert resp.status_code == 204, resp.text
    assert owner.get(f"{base}/v1/videos/{vid}").status_code == 404  # gone at once
    assert not any(visible_in(anon, base, vid, "wombat").values())
    assert anon.get(f"{base}/watch/{vid}").status_code == 404
    eventually(lambda: not leftovers(platform, vid) and not indexed(platform, vid) and not counted(platform, vid),
               what="every trace to go")
    assert owner.delete(f"{base}/v1/videos/{vid}").status_code == 404


def test_delete_while_transcoding_wins(platform, who, clips):
    base, owner = platform.gateway_url, who["owner"]
    worker = tpb_grpc.TranscoderServiceStub(dial(platform.addresses["transcoder-0"], platform.cfg, "transcoder"))
    done_before = worker.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=5)
    vid = upload(owner, base, clips["long"], "Platypus dive")
    eventually(lambda: worker.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=5).current_video_id == vid,
               what="the worker to take the job")
    assert owner.get(f"{base}/v1/videos/{vid}").json()["status"] == "PROCESSING"
    assert owner.delete(f"{base}/v1/videos/{vid}").status_code == 204

    def finished() -> bool:
        status = worker.GetWorkerStatus(tpb.GetWorkerStatusRequest(), timeout=5)
        return not status.current_video_id and (status.jobs_done + status.jobs_failed
                                                > done_before.jobs_done + done_before.jobs_failed)

    eventually(finished, timeout_s=240, what="the transcode to finish")
    # Its late result reached placement, which published nothing and removed what it wrote.
    eventually(lambda: not leftovers(platform, vid), what="the late media to go")
    time.sleep(3)
    assert owner.get(f"{base}/v1/videos/{vid}").status_code == 404
    assert not leftovers(platform, vid) and not indexed(platform, vid)
    assert all(not v for v in visible_in(owner, base, vid, "platypus").values())
