"""The built-in house ad: a short clip (colour bars and a tone) made with ffmpeg on first
request, so the house pre-roll really plays without a binary in the repository.
"""
from __future__ import annotations

import asyncio
import os
import pathlib

HOUSE_AD_SECONDS = 5


def make_house_ad(path: pathlib.Path, seconds: int = HOUSE_AD_SECONDS) -> None:
    import ffmpeg

    from longtail_common import ffmpeg_run

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.mp4")
    bars = ffmpeg.input(f"smptehdbars=size=640x360:rate=25:duration={seconds}", f="lavfi")
    tone = ffmpeg.input(f"sine=frequency=660:sample_rate=48000:duration={seconds}", f="lavfi")
    clip = ffmpeg.output(bars, tone, str(tmp), **{"c:v": "libx264", "preset": "veryfast", "pix_fmt": "yuv420p",
                                                 "c:a": "aac", "b:a": "64k", "movflags": "+faststart",
                                                 "shortest": None})
    ffmpeg_run.run(ffmpeg_run.command(clip), 120, "making the house ad")
    os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none


class HouseAd:
    """The clip under the data directory, made once however many requests ask at first."""

    def __init__(self, path: pathlib.Path):
        self._path = path
        self._lock = asyncio.Lock()

    async def path(self) -> pathlib.Path:
        if not self._path.exists():
            async with self._lock:
                if not self._path.exists():
                    await asyncio.to_thread(make_house_ad, self._path)
        return self._path
