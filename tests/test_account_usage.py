"""metadata_svc's account usage (ListChannels include_usage): the source sizes of an
account's videos that are not FAILED, and its videos created in the last 24 hours."""
from __future__ import annotations

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from longtail_common.ports import ChannelRecord, VideoRecord
from metadata_svc.usage import DAY_US, account_usage

S = video_pb2.VideoStatus
NOW_US = 1_800_000_000 * 1_000_000


def _video(store, video_id: str, channel: str, size: int, status: int, age_us: int) -> None:
    video = video_pb2.Video(id=video_id, channel=video_pb2.Channel(id=channel), size_bytes=size, status=status)
    store.create_video(VideoRecord(video_id=video_id, channel_id=channel, status=status,
                                   create_time_us=NOW_US - age_us, etag="e", payload=video.SerializeToString()))


def test_usage_sums_sizes_of_videos_not_failed_and_counts_the_last_day(tmp_path):
    store = SqliteMetadataStore(tmp_path / "m.sqlite3")
    channels = [ChannelRecord("cooking", "cooking", "ada"), ChannelRecord("baking", "baking", "ada")]
    for channel in channels + [ChannelRecord("other", "other", "bob")]:
        store.create_channel(channel)
    _video(store, "v1", "cooking", 100, S.VIDEO_STATUS_READY, age_us=2 * DAY_US)
    _video(store, "v2", "cooking", 20, S.VIDEO_STATUS_UPLOADING, age_us=60_000_000)
    _video(store, "v3", "baking", 7, S.VIDEO_STATUS_FAILED, age_us=60_000_000)  # counted as an upload only
    _video(store, "v4", "other", 1000, S.VIDEO_STATUS_READY, age_us=0)  # bob's
    for i in range(150):  # more than one page
        _video(store, f"p{i}", "baking", 1, S.VIDEO_STATUS_PROCESSING, age_us=DAY_US + 1)
    usage = account_usage(store, channels, now_us=NOW_US)
    assert usage == mpb.AccountUsage(stored_bytes=100 + 20 + 150, uploads_last_day=2)
    assert account_usage(store, [], now_us=NOW_US) == mpb.AccountUsage()
    store.close()
