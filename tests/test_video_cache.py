"""The gateway's video cache: a change is seen by every gateway process within a second
(the video.changed event, not the TTL), and a deleted video is never served once a process
has answered 404 for it. Unit tests of the cache's in-flight rules, then two gateway
processes of an embedded platform (`gateway_workers=2`) sharing one port."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest
from google.protobuf import field_mask_pb2

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_cli.launcher import Platform, free_port
from longtail_common.config import Config
from longtail_common.grpc_server import dial
from gateway.errors import ApiError
from gateway.video_cache import VideoCache
from tests.auth_helpers import bearer, service_metadata


def test_a_load_in_flight_when_its_video_changes_is_not_kept():
    async def scenario():
        cache = VideoCache(ttl_s=60, max_videos=10)
        release = asyncio.Event()
        loads = []

        async def slow_load():
            loads.append("slow")
            await release.wait()
            return video_pb2.Video(id="v1", title="before")

        async def fresh_load():
            loads.append("fresh")
            return video_pb2.Video(id="v1", title="after")

        first = asyncio.ensure_future(cache.get("v1", slow_load))
        await asyncio.sleep(0)
        joined = asyncio.ensure_future(cache.get("v1", slow_load))  # shares the load in flight
        await asyncio.sleep(0)
        cache.invalidate("v1")  # the change event arrives while it loads
        after = await cache.get("v1", fresh_load)  # a request after the event loads anew
        release.set()
        assert (await first).video().title == (await joined).video().title == "before"
        assert after.video().title == "after" and loads == ["slow", "fresh"]
        assert (await cache.get("v1", slow_load)).video().title == "after"  # the stale answer was not stored

    asyncio.run(scenario())


def test_a_404_is_cached_until_the_video_is_created():
    async def scenario():
        cache = VideoCache(ttl_s=60, max_videos=10)
        calls = []

        async def missing():
            calls.append(1)
            raise ApiError(404, "NOT_FOUND", "video v2 not found")

        for _ in range(3):
            with pytest.raises(ApiError) as err:
                (await cache.get("v2", missing)).video()
            assert err.value.status == 404
        assert len(calls) == 1
        cache.invalidate("v2")  # created: its event drops the 404
        assert (await cache.get("v2", lambda: asyncio.sleep(0, video_pb2.Video(id="v2")))).video().id == "v2"

    asyncio.run(scenario())


def test_an_expired_video_is_read_again_and_keeps_its_renderings_while_unchanged():
    async def scenario():
        cache = VideoCache(ttl_s=0.05, max_videos=10)
        versions = iter(["e1", "e1", "e2"])
        renders = []

        async def load():
            return video_pb2.Video(id="v3", etag=next(versions))

        for _ in range(3):  # each read after the TTL asks metadata again
            entry = await cache.get("v3", load)
            entry.rendered("page", lambda: renders.append(entry.video().etag))
            await asyncio.sleep(0.06)
        assert renders == ["e1", "e2"]  # the second read found e1 again: its rendering stood

    asyncio.run(scenario())


def test_a_video_read_late_in_its_ttl_answers_at_once_and_is_reloaded_behind():
    async def scenario():
        cache = VideoCache(ttl_s=2.0, max_videos=10)
        loads, release = [], asyncio.Event()

        async def load():
            loads.append(1)
            if len(loads) > 1:
                await release.wait()
            return video_pb2.Video(id="v4", etag="e1")

        first = await cache.get("v4", load)
        await asyncio.sleep(1.2)  # past half the TTL
        assert await cache.get("v4", load) is first  # the copy answers at once ...
        await asyncio.sleep(0)
        assert len(loads) == 2  # ... and a reload started behind it
        assert await cache.get("v4", load) is first
        await asyncio.sleep(0)
        assert len(loads) == 2  # one reload at a time
        release.set()
        await asyncio.sleep(1.0)  # 2.2 s after the first load: past the TTL it started with
        assert cache.fresh("v4", load) is first  # renewed by the reload (same etag: renderings kept)

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    cfg = Config(data_dir=str(tmp_path_factory.mktemp("longtail-cache")))
    cfg.gateway.video_cache_ttl_s = 60.0  # what is seen within a second is the event's doing
    p = Platform(cfg, gateway_port=free_port(), transcoder_workers=0, gateway_workers=2)
    p.start()
    yield p
    p.stop()


def _worker_urls(platform) -> list[str]:
    return [f"http://{platform.service_states()[name]['address']}" for name in platform.gateway_names()]


def _until(check, timeout_s: float) -> float:
    """Seconds until check() is true (polled every 20 ms); fails after timeout_s."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "not within the time allowed"
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_change_reaches_every_gateway_process_within_a_second(platform):
    workers = _worker_urls(platform)
    assert len(workers) == 2
    with httpx.Client(timeout=30) as c:
        created = c.post(f"{platform.gateway_url}/v1/videos", json={"title": "cached", "channel_id": "cachechan"},
                         headers=bearer(platform.cfg, "cache-uploader"))
        vid = created.json()["id"]
        for url in workers:  # each process caches it
            assert c.get(f"{url}/v1/videos/{vid}").json()["title"] == "cached"
        with dial(platform.addresses["metadata"], platform.cfg, "metadata") as channel:
            stub = mpb_grpc.MetadataServiceStub(channel)
            stub.UpdateVideo(mpb.UpdateVideoRequest(video=video_pb2.Video(id=vid, title="renamed"),
                                                    update_mask=field_mask_pb2.FieldMask(paths=["title"])),
                             metadata=service_metadata(platform.cfg))
            for url in workers:
                seen = _until(lambda: c.get(f"{url}/v1/videos/{vid}").json()["title"] == "renamed", 1.0)
                assert seen < 1.0
            stub.DeleteVideo(mpb.DeleteVideoRequest(id=vid), metadata=service_metadata(platform.cfg))
        gone_at = {}
        for url in workers:
            gone_at[url] = _until(lambda: c.get(f"{url}/v1/videos/{vid}").status_code == 404, 1.0)
        # Once a process has answered 404, the video is never served by it again.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for url in workers:
                assert c.get(f"{url}/v1/videos/{vid}").status_code == 404
                assert c.get(f"{url}/v1/videos/{vid}/watch").status_code == 404


def test_each_gateway_process_is_supervised_and_scraped_on_its_own(platform):
    names = platform.gateway_names()
    _until(lambda: all(platform.service_states()[n]["metrics_address"] for n in names), 30)
    states = platform.service_states()
    targets = json.loads(platform.targets_file.read_text())
    scraped = {t["labels"]["instance"]: t for t in targets if t["labels"]["job"] == "gateway"}
    assert set(scraped) == set(names)
    assert len({states[n]["metrics_address"] for n in names}) == len({states[n]["address"] for n in names}) == 2
    victim = states[names[1]]
    os.kill(victim["pid"], signal.SIGKILL)
    with httpx.Client(timeout=10) as c:
        # The shared port goes on answering (the other process) while the victim restarts.
        for _ in range(20):
            assert c.get(f"{platform.gateway_url}/healthz").status_code == 200

        def back() -> bool:
            state = platform.service_states()[names[1]]
            return state["restarts"] == victim["restarts"] + 1 and state["state"] == "running" and state["serving"]

        _until(back, 60)
        assert c.get(f"http://{platform.service_states()[names[1]]['address']}/healthz").status_code == 200
