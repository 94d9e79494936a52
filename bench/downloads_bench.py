"""What issue 27's downloads and thumbnails cost, against the encode they come from: a
60 s 720p clip (the e2e tests' testsrc2 + tone) is encoded once with the default ladder
(timed, as the reference), then

  downloads   each H.264 rung remuxed into a progressive MP4 and the audio into an M4A
              (transcoder_svc.jobs.downloads: streams copied, no re-encode): wall time, size
  preview     the cards' animated WebP (ffmpeg_graphs._preview, from the source): time, size
  thumbnails  a frame at a time cut from the stored renditions by the gateway
              (gateway/frames.py, through gateway/routes/thumbnails.ThumbnailCache on the
              filesystem store): first request (cut) vs the same one again (read back), per width

Run from the repo root:  nice -n 10 .venv/bin/python bench/downloads_bench.py [--seconds 60]
Writes bench/results/downloads.json.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway.frames import FrameMaker  # noqa: E402
from gateway.routes.thumbnails import ThumbnailCache  # noqa: E402
from longtail.metadata.v1 import video_pb2  # noqa: E402
from longtail_cli.cli import make_test_clip  # noqa: E402
from longtail_common.adapters import make_object_store  # noqa: E402
from longtail_common.config import Config  # noqa: E402
from longtail_common.ports import MEDIA_BUCKET  # noqa: E402
from machine import cpu_model, ffmpeg_version  # noqa: E402  (bench/machine.py)
from transcoder_svc import ffmpeg_graphs, ladder, probe  # noqa: E402
from transcoder_svc.packaging import TranscodeOutput  # noqa: E402

VIDEO_ID = "benchDownloads"
WIDTHS = (160, 320, 640)
MOMENTS = 8  # thumbnails per width, spread over the video


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return round(time.perf_counter() - started, 3)


def remuxes(out: pathlib.Path, output: TranscodeOutput) -> dict:
    """Every rung as an MP4 and the audio as an M4A, each timed, from the packaged files."""
    rows = {}
    audio = out / "h264" / "audio" / "playlist.m3u8"
    for r in output.renditions:
        path = out / "dl" / f"{r.name}.mp4"
        path.parent.mkdir(exist_ok=True)
        wall = timed(lambda: ffmpeg_graphs.remux_rendition(str(out / r.playlist_path), str(audio), str(path)))
        rows[r.name] = {"wall_s": wall, "bytes": path.stat().st_size}
    m4a = out / "dl" / "audio.m4a"
    rows["m4a"] = {"wall_s": timed(lambda: ffmpeg_graphs.remux_audio(str(audio), str(m4a))),
                   "bytes": m4a.stat().st_size}
    return rows


def video_record(output: TranscodeOutput, duration_s: float) -> video_pb2.Video:
    return video_pb2.Video(id=VIDEO_ID, duration_seconds=duration_s, renditions=[
        video_pb2.Rendition(codec="h264", width=r.width, height=r.height, bitrate_bps=r.bitrate_bps,
                            object_key=f"videos/{VIDEO_ID}/{r.playlist_path}") for r in output.renditions])


async def thumbnails(data_dir: str, out: pathlib.Path, video: video_pb2.Video) -> dict:
    """Per width: the median first request (a cut) and the median repeat (read back)."""
    objects = make_object_store(Config(data_dir=data_dir))
    objects.ensure_bucket(MEDIA_BUCKET)
    for path in (out / "h264").rglob("*"):
        if path.is_file():
            objects.put_file(MEDIA_BUCKET, f"videos/{VIDEO_ID}/{path.relative_to(out).as_posix()}", str(path))
    cache = ThumbnailCache(objects, FrameMaker(objects, 2, 60))
    rows = {}
    for width in WIDTHS:
        first, again = [], []
        for i in range(MOMENTS):
            at = round((i + 0.5) * video.duration_seconds / MOMENTS, 1)
            for times in (first, again):
                started = time.perf_counter()
                await cache.get(video, at, width)
                times.append(time.perf_counter() - started)
        rows[str(width)] = {"cut_median_ms": round(statistics.median(first) * 1000, 1),
                            "cut_max_ms": round(max(first) * 1000, 1),
                            "cached_median_ms": round(statistics.median(again) * 1000, 2)}
        print(f"thumbnail {width} px: {rows[str(width)]}", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "downloads.json"))
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="downloads-bench-") as tmp:
        src, out = os.path.join(tmp, "clip.mp4"), pathlib.Path(tmp) / "out"
        make_test_clip(src, seconds=args.seconds, height=720)
        info = probe.probe(src)
        rungs = ladder.ladder_for(info, "constant_quality")
        holder = {}
        encode_s = timed(lambda: holder.update(output=ffmpeg_graphs.transcode(src, str(out), info, rungs)))
        output = holder["output"]
        print(f"encode (reference): {encode_s} s", flush=True)
        downloads = remuxes(out, output)
        print(f"downloads: {downloads}", flush=True)
        preview_out = TranscodeOutput()
        (out / "preview-run" / "thumbs").mkdir(parents=True)
        preview_s = timed(lambda: ffmpeg_graphs._preview(src, out / "preview-run", info, preview_out, 120))
        preview = {"wall_s": preview_s, "bytes": (out / "preview-run" / preview_out.preview_path).stat().st_size,
                   "width": preview_out.preview_width, "height": preview_out.preview_height}
        print(f"preview: {preview}", flush=True)
        thumbs = asyncio.run(thumbnails(os.path.join(tmp, "store"), out, video_record(output, info.duration_s)))
    total_remux = round(sum(d["wall_s"] for d in downloads.values()), 3)
    result = {"bench": "downloads", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                          "ffmpeg": ffmpeg_version(), "loadavg_1m_at_end": round(os.getloadavg()[0], 1)},
              "command": "nice -n 10 python bench/downloads_bench.py " + " ".join(sys.argv[1:]),
              "source": {"seconds": args.seconds, "height": 720, "kind": "testsrc2 + 440 Hz tone"},
              "encode_reference_s": encode_s, "downloads": downloads,
              "all_downloads_s": total_remux, "all_downloads_vs_encode": round(total_remux / encode_s, 4),
              "preview": preview, "thumbnails": thumbs, "bench_wall_s": round(time.monotonic() - started, 1)}
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
