"""What an account's videos take, for its quotas: computed from the store on request.

A sum over the account's videos rather than a running counter: every path that changes a
video's size or status (creation, a deferred upload growing, FAILED, the sweeper's
deletes) would have to keep a counter in step exactly once, across retries and crashes,
and a counter that drifts refuses uploads or lets them through for good; a query cannot
drift. PeerTube sums its users' video files the same way on each upload. The cost is one
read of each of the account's videos per check, made only where a quota is checked
(creating an upload, a PATCH whose size was deferred).
"""
from __future__ import annotations

import time

from longtail.metadata.v1 import metadata_service_pb2 as pb
from longtail.metadata.v1 import video_pb2
from longtail_common.ports import ChannelRecord, MetadataStore

DAY_US = 86_400 * 1_000_000
PAGE = 100


def account_usage(store: MetadataStore, channels: list[ChannelRecord], now_us: int | None = None) -> pb.AccountUsage:
    now_us = int(time.time() * 1e6) if now_us is None else now_us
    usage = pb.AccountUsage()
    for channel in channels:
        cursor = None
        while True:
            records, cursor = store.list_channel_videos(channel.channel_id, PAGE, cursor, None)
            for record in records:
                if record.create_time_us > now_us - DAY_US:
                    usage.uploads_last_day += 1
                if record.status != video_pb2.VIDEO_STATUS_FAILED:
                    video = video_pb2.Video()
                    video.ParseFromString(record.payload)
                    usage.stored_bytes += video.size_bytes
            if not cursor:
                break
    return usage
