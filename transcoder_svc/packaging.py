"""Packaging: the HLS master and DASH MPD of each codec family, written from the measured
CMAF segments ffmpeg left, so both protocols share the same segment files; the
storyboard's WebVTT cues.

`package_families` reads what an encode wrote (<out>/<family>/<rung>/playlist.m3u8 and
<family>/audio/) and returns the TranscodeOutput the worker stores: per rendition its
peak and average bitrate (video + audio, as the manifests advertise them) and codecs.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from transcoder_svc.ladder import FAMILY_AUDIO_CODEC, SEGMENT_SECONDS, Rung, Storyboard
from transcoder_svc.probe import MediaError, MediaInfo

# RFC 6381 string of each audio codec (HLS CODECS, DASH @codecs).
AUDIO_CODECS_STRING = {"aac": "mp4a.40.2", "opus": "opus"}
# A transcode that yields less than this share of the probed duration came from a
# truncated or damaged file; publishing it would show viewers a video that stops early.
MIN_DECODED_SHARE = 0.9


@dataclass
class RenditionOutput:
    codec: str
    name: str
    width: int
    height: int
    bitrate_bps: int  # peak bandwidth (video + audio) as advertised in the manifests
    average_bitrate_bps: int
    container: str
    playlist_path: str  # relative to the output directory
    frame_rate: float
    codecs: str
    duration_s: float = 0.0
    vmaf: float = 0.0


@dataclass
class FamilyOutput:
    codec: str
    hls_path: str  # master playlist, relative to the output directory
    dash_path: str  # MPD
    audio_codec: str = ""  # "aac" | "opus"; "" when the video has no audio
    renditions: list[RenditionOutput] = field(default_factory=list)


@dataclass
class TranscodeOutput:
    families: list[FamilyOutput] = field(default_factory=list)
    poster_path: str = ""
    poster_width: int = 0
    poster_height: int = 0
    storyboard_path: str = ""  # tiled JPEG sprite
    storyboard_vtt_path: str = ""  # WebVTT cues pointing into the sprite with #xywh
    storyboard_width: int = 0
    storyboard_height: int = 0
    preview_path: str = ""  # the cards' looping animated WebP
    preview_width: int = 0
    preview_height: int = 0
    duration_s: float = 0.0
    # The rungs as encoded (the top one's CRF lowered by a top rung check); [] = as asked.
    rungs: list[Rung] = field(default_factory=list)

    @property
    def renditions(self) -> list[RenditionOutput]:
        return [r for f in self.families for r in f.renditions]

    @property
    def master_path(self) -> str:
        return self.families[0].hls_path


def package_families(out: Path, info: MediaInfo, rungs: list[Rung], families) -> TranscodeOutput:
    """Manifests for every family an encode wrote under `out`; MediaError when the encode
    came out short (a truncated or damaged source)."""
    result = TranscodeOutput()
    for family in families:
        fam = _package(out, family, info, rungs)
        result.families.append(fam)
        result.duration_s = max([result.duration_s] + [r.duration_s for r in fam.renditions])
    if result.duration_s < info.duration_s * MIN_DECODED_SHARE:
        raise MediaError(f"the file is truncated or damaged: only {result.duration_s:.1f} s of its "
                         f"{info.duration_s:.1f} s could be decoded")
    return result


def add_storyboard(result: TranscodeOutput, out: Path, sb: Storyboard) -> None:
    """Cues for the sprite ffmpeg wrote to <out>/thumbs/storyboard.jpg, recorded in `result`."""
    _write_storyboard_vtt(out / "thumbs" / "storyboard.vtt", sb, result.duration_s)
    result.storyboard_path, result.storyboard_vtt_path = "thumbs/storyboard.jpg", "thumbs/storyboard.vtt"
    result.storyboard_width, result.storyboard_height = sb.columns * sb.tile_width, sb.rows * sb.tile_height


@dataclass
class MediaPlaylist:
    init: str
    segments: list[tuple[str, float]]  # (file name, duration s)

    @property
    def duration_s(self) -> float:
        return sum(d for _, d in self.segments)


_MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


def read_media_playlist(path: Path) -> MediaPlaylist:
    text = path.read_text()
    init = _MAP.search(text)
    segments, duration = [], None
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append((line, duration))
            duration = None
    return MediaPlaylist(init=init.group(1) if init else "", segments=segments)


def _bitrates(folder: Path, pl: MediaPlaylist) -> tuple[int, int]:
    """(peak, average) bits per second over the segments, as players budget for them."""
    sizes = [((folder / name).stat().st_size, d) for name, d in pl.segments]
    # the short last segment would exaggerate the peak; players judge whole segments
    full = [s * 8 / d for s, d in sizes if d >= SEGMENT_SECONDS * 0.5] or [s * 8 / d for s, d in sizes if d > 0]
    total_d = sum(d for _, d in sizes)
    avg = int(sum(s for s, _ in sizes) * 8 / total_d) if total_d else 0
    return int(max(full, default=avg)), avg


def _package(out: Path, family: str, info: MediaInfo, rungs: list[Rung]) -> FamilyOutput:
    fam_dir = out / family
    audio = None
    if info.has_audio:
        pl_path = fam_dir / "audio" / "playlist.m3u8"
        if not pl_path.exists():
            raise MediaError(f"transcoding produced no {family} audio playlist")
        apl = read_media_playlist(pl_path)
        audio = (apl, *_bitrates(fam_dir / "audio", apl))
    audio_codec = FAMILY_AUDIO_CODEC[family] if audio else ""
    fam = FamilyOutput(codec=family, hls_path=f"{family}/master.m3u8", dash_path=f"{family}/manifest.mpd",
                       audio_codec=audio_codec)
    playlists = {}
    for rung in rungs:
        pl_path = fam_dir / rung.name / "playlist.m3u8"
        if not pl_path.exists():
            raise MediaError(f"transcoding produced no {family} {rung.name} playlist")
        pl = read_media_playlist(pl_path)
        if not pl.segments or not pl.init:
            raise MediaError(f"transcoding produced an empty {family} {rung.name} playlist")
        playlists[rung.name] = pl
        peak, avg = _bitrates(fam_dir / rung.name, pl)
        if audio:
            peak, avg = peak + audio[1], avg + audio[2]
        fam.renditions.append(RenditionOutput(
            codec=family, name=rung.name, width=rung.width, height=rung.height, bitrate_bps=peak,
            average_bitrate_bps=avg, container="fmp4", playlist_path=f"{family}/{rung.name}/playlist.m3u8",
            frame_rate=rung.frame_rate,
            codecs=rung.codecs_for(family) + (f",{AUDIO_CODECS_STRING[audio_codec]}" if audio else ""),
            duration_s=pl.duration_s,
            vmaf=rung.vmaf if family == "h264" else rung.family_vmaf.get(family, 0.0),
        ))
    _write_hls_master(fam_dir / "master.m3u8", fam, audio is not None)
    _write_mpd(fam_dir / "manifest.mpd", fam, rungs, playlists, audio[0] if audio else None,
               (audio[1] if audio else 0), max(r.duration_s for r in fam.renditions))
    return fam


def _write_hls_master(path: Path, fam: FamilyOutput, has_audio: bool) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if has_audio:
        lines.append('#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="default",DEFAULT=YES,AUTOSELECT=YES,'
                     'CHANNELS="2",URI="audio/playlist.m3u8"')
    for r in sorted(fam.renditions, key=lambda r: r.bitrate_bps):
        attrs = (f"BANDWIDTH={r.bitrate_bps},AVERAGE-BANDWIDTH={r.average_bitrate_bps},"
                 f"RESOLUTION={r.width}x{r.height},FRAME-RATE={r.frame_rate:.3f},CODECS=\"{r.codecs}\"")
        if has_audio:
            attrs += ',AUDIO="aud"'
        lines += [f"#EXT-X-STREAM-INF:{attrs}", f"{r.name}/playlist.m3u8"]
    path.write_text("\n".join(lines) + "\n")


def _iso_duration(seconds: float) -> str:
    return f"PT{seconds:.3f}S"


def _segment_template(parent: ET.Element, rep_id: str, pl: MediaPlaylist) -> None:
    # $RepresentationID$ is the rung's folder, so DASH reads the very files HLS lists.
    first = int(re.search(r"(\d+)", pl.segments[0][0]).group(1))
    tmpl = ET.SubElement(parent, "SegmentTemplate", timescale="1000", startNumber=str(first),
                         initialization=f"{rep_id}/{pl.init}", media=f"{rep_id}/segment_$Number%05d$.m4s")
    timeline = ET.SubElement(tmpl, "SegmentTimeline")
    start = 0.0
    for i, (_, d) in enumerate(pl.segments):
        t0, t1 = round(start * 1000), round((start + d) * 1000)
        attrs = {"d": str(t1 - t0)}
        if i == 0:
            attrs["t"] = str(t0)
        ET.SubElement(timeline, "S", **attrs)
        start += d


def _write_mpd(path: Path, fam: FamilyOutput, rungs: list[Rung], playlists: dict[str, MediaPlaylist],
               audio: MediaPlaylist | None, audio_peak: int, duration_s: float) -> None:
    mpd = ET.Element("MPD", xmlns="urn:mpeg:dash:schema:mpd:2011", type="static",
                     profiles="urn:mpeg:dash:profile:isoff-live:2011,urn:mpeg:dash:profile:cmaf:2019",
                     minBufferTime=_iso_duration(SEGMENT_SECONDS), mediaPresentationDuration=_iso_duration(duration_s))
    period = ET.SubElement(mpd, "Period", id="0", start="PT0S")
    video = ET.SubElement(period, "AdaptationSet", id="0", contentType="video", mimeType="video/mp4",
                          segmentAlignment="true", startWithSAP="1",
                          maxWidth=str(max(r.width for r in rungs)), maxHeight=str(max(r.height for r in rungs)))
    for r, rung in sorted(zip(fam.renditions, rungs), key=lambda x: x[0].bitrate_bps):
        rep = ET.SubElement(video, "Representation", id=rung.name, bandwidth=str(r.bitrate_bps - audio_peak),
                            width=str(r.width), height=str(r.height), frameRate=_frame_rate(r.frame_rate),
                            codecs=rung.codecs_for(fam.codec), sar="1:1")
        _segment_template(rep, rung.name, playlists[rung.name])
    if audio is not None:
        aset = ET.SubElement(period, "AdaptationSet", id="1", contentType="audio", mimeType="audio/mp4",
                             lang="und", segmentAlignment="true", startWithSAP="1")
        rep = ET.SubElement(aset, "Representation", id="audio", bandwidth=str(audio_peak),
                            codecs=AUDIO_CODECS_STRING[fam.audio_codec], audioSamplingRate="48000")
        ET.SubElement(rep, "AudioChannelConfiguration",
                      schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011", value="2")
        _segment_template(rep, "audio", audio)
    ET.indent(mpd)
    path.write_bytes(ET.tostring(mpd, encoding="utf-8", xml_declaration=True) + b"\n")


def _frame_rate(fps: float) -> str:
    frac = Fraction(fps).limit_denominator(1001)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"


def _write_storyboard_vtt(path: Path, sb: Storyboard, duration_s: float) -> None:
    def ts(t: float) -> str:
        ms = int(round(t * 1000))
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    lines = ["WEBVTT", ""]
    for i in range(sb.count):
        start = i * sb.interval_s
        if start >= duration_s:
            break
        end = min((i + 1) * sb.interval_s, duration_s)
        x, y = (i % sb.columns) * sb.tile_width, (i // sb.columns) * sb.tile_height
        lines += [f"{ts(start)} --> {ts(end)}", f"storyboard.jpg#xywh={x},{y},{sb.tile_width},{sb.tile_height}", ""]
    path.write_text("\n".join(lines))
