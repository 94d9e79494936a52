"""A video's alternate audio tracks in its manifests as they are served: an HLS master
gets an `EXT-X-MEDIA:TYPE=AUDIO` rendition per READY track in the variants' audio group,
a DASH MPD an audio AdaptationSet per track (Role main/dub/description). The stored
manifests stay as the transcoder wrote them, so a track added or deleted after READY
shows in the next manifest fetched, with no re-transcode.

Text in, text out (`hls_master_with_audio`, `mpd_with_audio`), so other served additions
(captions' subtitle renditions) compose with these in either order.
"""
from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable

import m3u8

from longtail.metadata.v1 import video_pb2
from longtail_common.proto_enums import AUDIO_TRACK_KIND_NAMES

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"
# DVB/TV-Anytime: "1" is audio description for the visually impaired.
AUDIO_PURPOSE_SCHEME = "urn:tva:metadata:cs:AudioPurposeCS:2007"
DESCRIBES_VIDEO = "public.accessibility.describes-video"
DEFAULT_GROUP = "aud"
TRACK_KEY = re.compile(r"videos/[A-Za-z0-9][A-Za-z0-9_-]{0,63}/[A-Za-z0-9_.-]+/audio-[A-Za-z0-9-]+-[0-9a-f]+/"
                       r"(init\.mp4|segment_[0-9]{5}\.m4s|playlist\.m3u8)")
_GROUP = re.compile(r'GROUP-ID="([^"]*)"')
_UNSAFE = re.compile(r'["\r\n,]')
ET.register_namespace("", DASH_NS)


@dataclass(frozen=True)
class AudioRendition:
    """One track's encoding for the manifest's codec family."""

    language: str
    kind: str  # main | dub | description
    name: str
    playlist_key: str
    codecs: str
    bitrate_bps: int


def is_audio_track_key(key: str) -> bool:
    return TRACK_KEY.fullmatch(key) is not None



def renditions_for(video: video_pb2.Video, manifest_key: str) -> list[AudioRendition]:
    """The READY tracks' encodings in the manifest's family folder, by language and kind."""
    folder = posixpath.dirname(manifest_key)
    out = []
    for t in video.audio_tracks:
        if t.status != video_pb2.AUDIO_TRACK_STATUS_READY:
            continue
        for e in t.encodings:
            if posixpath.dirname(posixpath.dirname(e.playlist_object_key)) == folder:
                out.append(AudioRendition(t.language, AUDIO_TRACK_KIND_NAMES.get(t.kind, "dub"),
                                          t.label or t.language, e.playlist_object_key, e.codecs, e.bitrate_bps))
    return sorted(out, key=lambda r: (r.language, r.kind))


def _media_line(r: AudioRendition, group: str, manifest_key: str, default: bool) -> str:
    uri = posixpath.relpath(r.playlist_key, posixpath.dirname(manifest_key))
    attrs = [f'TYPE=AUDIO,GROUP-ID="{group}"', f'LANGUAGE="{r.language}"', f'NAME="{_UNSAFE.sub(" ", r.name)}"',
             f"DEFAULT={'YES' if default else 'NO'}", "AUTOSELECT=YES", 'CHANNELS="2"']
    if r.kind == "description":
        attrs.append(f'CHARACTERISTICS="{DESCRIBES_VIDEO}"')
    return "#EXT-X-MEDIA:" + ",".join(attrs) + f',URI="{uri}"'


def _with_audio_group(stream_inf: str, group: str, codecs: str) -> str:
    """A variant naming the audio group, its CODECS listing the audio codec."""
    if 'AUDIO="' not in stream_inf:
        stream_inf += f',AUDIO="{group}"'
    m = re.search(r'CODECS="([^"]*)"', stream_inf)
    if m and codecs not in [c.strip() for c in m.group(1).split(",")]:
        stream_inf = stream_inf[:m.end(1)] + f",{codecs}" + stream_inf[m.end(1):]
    return stream_inf


def hls_master_with_audio(text: str, manifest_key: str, tracks: list[AudioRendition]) -> str:
    """The master playlist with `tracks` as renditions of the variants' audio group (a
    video stored without sound gets the group, the first track as its default)."""
    if not tracks:
        return text
    lines = text.rstrip("\n").split("\n")
    audio = [i for i, line in enumerate(lines) if line.startswith("#EXT-X-MEDIA:") and "TYPE=AUDIO" in line]
    group = (_GROUP.search(lines[audio[0]]).group(1) if audio and _GROUP.search(lines[audio[0]]) else DEFAULT_GROUP)
    media = [_media_line(r, group, manifest_key, default=not audio and i == 0) for i, r in enumerate(tracks)]
    first_variant = next((i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")), len(lines))
    at = audio[-1] + 1 if audio else first_variant
    lines[at:at] = media
    if not audio:
        lines = [_with_audio_group(line, group, tracks[0].codecs) if line.startswith("#EXT-X-STREAM-INF:") else line
                 for line in lines]
    return "\n".join(lines) + "\n"


def _segment_template(rep: ET.Element, folder: str, playlist: bytes) -> None:
    """SegmentTemplate + SegmentTimeline of the track's CMAF files, from its HLS playlist
    (the same files both protocols read)."""
    pl = m3u8.loads(playlist.decode("utf-8"))
    first = int(re.search(r"([0-9]+)", pl.segments[0].uri).group(1))
    q = f"{{{DASH_NS}}}"
    tmpl = ET.SubElement(rep, q + "SegmentTemplate", timescale="1000", startNumber=str(first),
                         initialization=f"{folder}/init.mp4", media=f"{folder}/segment_$Number%05d$.m4s")
    timeline = ET.SubElement(tmpl, q + "SegmentTimeline")
    start = 0.0
    for i, seg in enumerate(pl.segments):
        t0, t1 = round(start * 1000), round((start + seg.duration) * 1000)
        attrs = {"d": str(t1 - t0), **({"t": str(t0)} if i == 0 else {})}
        ET.SubElement(timeline, q + "S", **attrs)
        start += seg.duration


def _adaptation_set(period: ET.Element, set_id: int, r: AudioRendition, manifest_key: str,
                    read: Callable[[str], bytes]) -> None:
    q = f"{{{DASH_NS}}}"
    aset = ET.SubElement(period, q + "AdaptationSet", id=str(set_id), contentType="audio", mimeType="audio/mp4",
                         lang=r.language, segmentAlignment="true", startWithSAP="1")
    ET.SubElement(aset, q + "Label").text = r.name  # (schema order: Label, Accessibility, Role)
    if r.kind == "description":
        ET.SubElement(aset, q + "Accessibility", schemeIdUri=AUDIO_PURPOSE_SCHEME, value="1")
    ET.SubElement(aset, q + "Role", schemeIdUri=ROLE_SCHEME, value=r.kind)
    rep = ET.SubElement(aset, q + "Representation", id=f"audio-{r.language}-{r.kind}", bandwidth=str(r.bitrate_bps),
                        codecs=r.codecs, audioSamplingRate="48000")
    ET.SubElement(rep, q + "AudioChannelConfiguration",
                  schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011", value="2")
    folder = posixpath.relpath(posixpath.dirname(r.playlist_key), posixpath.dirname(manifest_key))
    _segment_template(rep, folder, read(r.playlist_key))


def mpd_with_audio(xml: bytes, manifest_key: str, tracks: list[AudioRendition], read: Callable[[str], bytes]) -> bytes:
    """The MPD with an audio AdaptationSet per track in each Period; the original sound's
    set gets Role main, so players tell it from the dubs. `read(key)` gives a track's
    stored HLS playlist (its segment timeline)."""
    if not tracks:
        return xml
    root = ET.fromstring(xml)
    ns = {"d": DASH_NS}
    for period in root.findall("d:Period", ns):
        sets = period.findall("d:AdaptationSet", ns)
        for aset in sets:
            if aset.get("contentType") == "audio" and aset.find("d:Role", ns) is None:
                aset.insert(0, ET.Element(f"{{{DASH_NS}}}Role", schemeIdUri=ROLE_SCHEME, value="main"))
        next_id = max((int(a.get("id")) for a in sets if (a.get("id") or "").isdigit()), default=-1) + 1
        for offset, r in enumerate(tracks):
            _adaptation_set(period, next_id + offset, r, manifest_key, read)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def with_audio_tracks(key: str, body: bytes, video: video_pb2.Video, read: Callable[[str], bytes]) -> bytes:
    """The served manifest `key` (its stored bytes) with the video's READY audio tracks."""
    tracks = renditions_for(video, key)
    if not tracks:
        return body
    if key.endswith(".mpd"):
        return mpd_with_audio(body, key, tracks, read)
    return hls_master_with_audio(body.decode("utf-8"), key, tracks).encode()
