"""The real MetadataService on SQLite, in-process: what unit tests of metadata's rules
(captions, lifecycle, audio tracks, the janitor) call through a real gRPC stub."""
from __future__ import annotations

import contextlib
import pathlib
from concurrent import futures

import grpc

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import metadata_service_pb2_grpc as mpb_grpc
from longtail.metadata.v1 import video_pb2
from longtail_common.adapters.sqlite_metadata import SqliteMetadataStore
from metadata_svc.server import MetadataServicer


@contextlib.contextmanager
def inprocess_metadata(folder: pathlib.Path, video_id: str = ""):
    """A stub of a MetadataService storing in `folder`, served on a free local port; with
    `video_id`, holding that video (title "t", channel "c") already."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    mpb_grpc.add_MetadataServiceServicer_to_server(MetadataServicer(SqliteMetadataStore(folder / "m.sqlite3")),
                                                   server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = mpb_grpc.MetadataServiceStub(channel)
            if video_id:
                stub.CreateVideo(mpb.CreateVideoRequest(video=video_pb2.Video(id=video_id, title="t",
                                                                              channel=video_pb2.Channel(id="c"))))
            yield stub
    finally:
        server.stop(0)
