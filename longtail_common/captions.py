"""Caption files: checking an uploaded WebVTT or SRT file line by line, converting it to
WebVTT (webvtt-py), and the objects a caption is stored as (the whole file, and the
segmented WebVTT media playlist HLS players read), written to the object store. Used by the gateway (uploads) and the
transcoder (automatic captions), so both store captions the same way.
"""
from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import webvtt
from webvtt import segmenter

from longtail_common.language_tags import language_name

MAX_CAPTION_BYTES = 512 * 1024  # a 3-hour film's subtitles take ~200 KB
MAX_CUES = 20_000
MAX_LINE_CHARS = 1_000
# WebVTT segment length in the HLS subtitle playlist: text is tiny, so long segments (a
# 3-hour film is 360 objects to write, not 1,080), which players fetch ahead anyway.
SEGMENT_SECONDS = 30
STORE_THREADS = 8
MAX_LABEL_CHARS = 64
CONTENT_TYPES = {"text/vtt": "vtt", "application/x-subrip": "srt", "application/srt": "srt", "text/srt": "srt"}

_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
_VTT_TIMING = re.compile(rf"{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t]+.*)?")
_SRT_TIMING = re.compile(rf"{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}(?:[ \t]+.*)?")
_VTT_BLOCKS_WITHOUT_TIMING = ("NOTE", "STYLE", "REGION")


class CaptionFileError(ValueError):
    """A caption file that cannot be used; `line` is the 1-based line at fault (0: the whole file)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.reason = message


@dataclass
class Cue:
    start_s: float
    end_s: float
    text: str


@dataclass
class CaptionFile:
    vtt: str  # the file as WebVTT
    cues: list[Cue]

    @property
    def duration_s(self) -> float:
        return max((c.end_s for c in self.cues), default=0.0)

    def plain_text(self) -> str:
        """The cues' words, tags removed: what search indexes."""
        return " ".join(c.text.replace("\n", " ") for c in self.cues)


def language_label(tag: str) -> str:
    """A caption's default label: its language's name in itself ("fr" -> "Français")."""
    return language_name(tag)[:MAX_LABEL_CHARS]


def _decode(data: bytes, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise CaptionFileError(f"the file is {len(data)} bytes; captions may take at most {max_bytes}")
    if not data.strip():
        raise CaptionFileError("the file is empty", 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise CaptionFileError(f"not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8", line) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in text:
        raise CaptionFileError("NUL character", text[:text.index("\x00")].count("\n") + 1)
    return text


def _seconds(groups) -> float:
    h, m, s, ms = groups
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _check_lines(text: str, fmt: str) -> int:
    """Raises CaptionFileError at the first line that breaks the format; returns the cue count."""
    lines = text.split("\n")
    if fmt == "vtt" and not re.fullmatch(r"WEBVTT(?:[ \t].*)?", lines[0]):
        raise CaptionFileError('a WebVTT file starts with "WEBVTT"', 1)
    timing = _VTT_TIMING if fmt == "vtt" else _SRT_TIMING
    cues, block_start, seen_timing, skip_block = 0, None, False, False
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise CaptionFileError(f"line longer than {MAX_LINE_CHARS} characters", number)
        if not line.strip():
            if block_start is not None and not seen_timing and not skip_block:
                raise CaptionFileError("text without a timing line (start --> end)", block_start)
            block_start, seen_timing, skip_block = None, False, False
            continue
        if block_start is None:
            block_start = number
            skip_block = number == 1 and fmt == "vtt" or line.split(" ")[0] in _VTT_BLOCKS_WITHOUT_TIMING
        if skip_block or "-->" not in line:
            if fmt == "srt" and not seen_timing and number > block_start:
                raise CaptionFileError("expected a timing line (00:00:01,000 --> 00:00:02,000)", number)
            continue
        m = timing.fullmatch(line.strip())
        if m is None:
            example = "00:00:01.000 --> 00:00:02.000" if fmt == "vtt" else "00:00:01,000 --> 00:00:02,000"
            raise CaptionFileError(f"malformed timing {line.strip()[:60]!r} (expected {example})", number)
        start, end = _seconds(m.groups()[:4]), _seconds(m.groups()[4:])
        if end <= start:
            raise CaptionFileError(f"the cue ends ({end:.3f} s) before it starts ({start:.3f} s)", number)
        seen_timing = True
        cues += 1
        if cues > MAX_CUES:
            raise CaptionFileError(f"more than {MAX_CUES} cues", number)
    return cues


def parse_caption_file(data: bytes, fmt: str, max_bytes: int = MAX_CAPTION_BYTES) -> CaptionFile:
    """The file (`fmt` "vtt" or "srt") as WebVTT with its cues; CaptionFileError names the
    line at fault (not UTF-8, broken timing, too big, no cues)."""
    text = _decode(data, max_bytes)
    count = _check_lines(text, fmt)
    if count == 0:
        raise CaptionFileError("the file has no cues")
    try:
        parsed = webvtt.from_buffer(io.StringIO(text), format=fmt)
    except webvtt.errors.MalformedFileError as exc:
        raise CaptionFileError(f"malformed {fmt.upper()} file ({exc})", 1) from None
    if len(parsed.captions) != count:  # webvtt-py skipped a block our line check let through
        raise CaptionFileError(f"{count} cues found but only {len(parsed.captions)} could be read")
    cues = sorted((Cue(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text)
                   for c in parsed.captions), key=lambda c: c.start_s)
    return CaptionFile(vtt=parsed.content if fmt == "vtt" else _as_vtt(parsed), cues=cues)


def _as_vtt(parsed: webvtt.WebVTT) -> str:
    out = io.StringIO()
    parsed.write(out)
    return out.getvalue()


def vtt_words(vtt: str) -> str:
    """The words of a stored WebVTT file's cues, tags removed (for the search index)."""
    return " ".join(c.text.replace("\n", " ") for c in webvtt.from_buffer(io.StringIO(vtt)).captions)


def cues_to_vtt(cues: list[Cue]) -> str:
    """A WebVTT file of `cues` (the automatic captions job's output)."""
    doc = webvtt.WebVTT(captions=[webvtt.Caption(_ts(c.start_s), _ts(c.end_s), c.text) for c in cues])
    return _as_vtt(doc)


def _ts(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def caption_objects(vtt: str, duration_s: float, segment_s: int = SEGMENT_SECONDS) -> dict[str, bytes]:
    """The files a caption is stored as, by name: `captions.vtt` (the whole file, for the
    DASH text track and the watch payload), `playlist.m3u8` and its `seg_NNNNN.vtt`
    segments (HLS subtitles), spanning `duration_s` (the video's; at least the cues')."""
    parsed = webvtt.from_buffer(io.StringIO(vtt))
    total = max([duration_s] + [c.end_time.in_milliseconds() / 1000 for c in parsed.captions])
    count = max(1, math.ceil(total / segment_s))
    segments = segmenter.slice_segments(parsed.captions, segment_s)
    segments = (segments + [[] for _ in range(count)])[:count]
    files = {"captions.vtt": vtt.encode()}
    with tempfile.TemporaryDirectory(prefix="captions-") as tmp:
        # MPEGTS 0 = LOCAL 0: cue times are the video's own presentation times (CMAF starts at 0).
        segmenter.write_segments(Path(tmp), segments, 0, styles=parsed.styles, regions=parsed.regions)
        for i in range(count):
            files[f"seg_{i:05d}.vtt"] = (Path(tmp) / f"fileSequence{i}.webvtt").read_bytes()
    lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{segment_s}", "#EXT-X-VERSION:3",
             "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i in range(count):
        seconds = max(0.001, min(segment_s, total - i * segment_s))
        lines += [f"#EXTINF:{seconds:.3f},", f"seg_{i:05d}.vtt"]
    files["playlist.m3u8"] = ("\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n").encode()
    return files


def store_caption_files(objects, bucket: str, prefix: str, files: dict[str, bytes]) -> None:
    """Writes a caption's files under `prefix` (several at a time), the playlist last:
    until it is there nothing names the segments."""
    def put(name: str) -> None:
        content_type = "application/vnd.apple.mpegurl" if name.endswith(".m3u8") else "text/vtt"
        objects.put_bytes(bucket, prefix + name, files[name], content_type=content_type)

    with ThreadPoolExecutor(max_workers=STORE_THREADS) as pool:
        list(pool.map(put, [n for n in files if n != "playlist.m3u8"]))
    put("playlist.m3u8")
