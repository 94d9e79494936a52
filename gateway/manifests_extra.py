"""Renditions added to a stored HLS master playlist or DASH MPD as it is served: tracks
that came after the transcode (captions today; alternate audio can use the same calls),
so adding one needs no re-transcode and no rewrite of stored manifests.

One job: text in, text out. HLS gets an `EXT-X-MEDIA` line per track and the group
named on every `EXT-X-STREAM-INF`; DASH gets an AdaptationSet per track in every Period.
Everything else in the manifest is left byte for byte (HLS) or element for element (DASH).
"""
from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

DASH_NS = "urn:mpeg:dash:schema:mpd:2011"
ET.register_namespace("", DASH_NS)
_ATTR_VALUE_UNSAFE = re.compile(r'["\r\n]')


@dataclass(frozen=True)
class ExtraTrack:
    """One added track. `hls_key`/`dash_key` are object keys (made relative to the manifest
    as it is served); `group_id` groups a TYPE's tracks in HLS."""

    media_type: str  # HLS TYPE: "SUBTITLES" (or "AUDIO")
    group_id: str
    language: str
    name: str
    hls_key: str  # the track's HLS media playlist
    dash_key: str  # the file (or segment template base) DASH names
    default: bool = False
    autoselect: bool = True
    characteristics: str = ""  # HLS CHARACTERISTICS, e.g. public.accessibility.transcribes-spoken-dialog
    dash_content_type: str = "text"
    dash_mime_type: str = "text/vtt"
    dash_role: str = "subtitle"  # urn:mpeg:dash:role:2011 value: subtitle, caption, main, dub, description
    dash_bandwidth: int = 256
    dash_codecs: str = ""


# The master playlist or MPD of a video's codec family: what the added tracks are written into.
MANIFEST_KEY = re.compile(r"videos/([A-Za-z0-9][A-Za-z0-9_-]{0,63})/[A-Za-z0-9_.-]+/(master\.m3u8|manifest\.mpd)")


def manifest_video(key: str) -> str | None:
    """The video whose master playlist or MPD `key` is, else None."""
    m = MANIFEST_KEY.fullmatch(key)
    return m.group(1) if m else None


def _quoted(value: str) -> str:
    """A quoted-string attribute value: no double quote, CR or LF (RFC 8216 4.2)."""
    return _ATTR_VALUE_UNSAFE.sub(" ", value)


def _media_line(track: ExtraTrack, manifest_key: str) -> str:
    uri = posixpath.relpath(track.hls_key, posixpath.dirname(manifest_key))
    attrs = [f"TYPE={track.media_type}", f'GROUP-ID="{track.group_id}"', f'LANGUAGE="{track.language}"',
             f'NAME="{_quoted(track.name)}"', f"DEFAULT={'YES' if track.default else 'NO'}",
             f"AUTOSELECT={'YES' if track.autoselect else 'NO'}"]
    if track.media_type == "SUBTITLES":
        attrs.append("FORCED=NO")
    if track.characteristics:
        attrs.append(f'CHARACTERISTICS="{track.characteristics}"')
    attrs.append(f'URI="{uri}"')
    return "#EXT-X-MEDIA:" + ",".join(attrs)


def _with_group(stream_inf: str, media_type: str, group_id: str) -> str:
    pattern = re.compile(rf'(?<=[:,]){media_type}="[^"]*"')
    if pattern.search(stream_inf):
        return pattern.sub(f'{media_type}="{group_id}"', stream_inf)
    return f'{stream_inf},{media_type}="{group_id}"'


def hls_master_with(text: str, manifest_key: str, tracks: list[ExtraTrack]) -> str:
    """The master playlist with `tracks` as EXT-X-MEDIA renditions, each variant naming
    their groups (one group per TYPE: a variant names one group of each)."""
    if not tracks:
        return text
    lines = text.rstrip("\n").split("\n")
    media = [_media_line(t, manifest_key) for t in tracks]
    first_variant = next((i for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")), len(lines))
    last_media = max((i for i, line in enumerate(lines[:first_variant]) if line.startswith("#EXT-X-MEDIA:")),
                     default=first_variant - 1)
    lines[last_media + 1:last_media + 1] = media
    groups = {t.media_type: t.group_id for t in tracks}
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            for media_type, group_id in groups.items():
                line = _with_group(line, media_type, group_id)
            lines[i] = line
    return "\n".join(lines) + "\n"


def mpd_with(xml: bytes, manifest_key: str, tracks: list[ExtraTrack]) -> bytes:
    """The MPD with one AdaptationSet per track in each Period (a Representation whose
    BaseURL is the track's file: a sidecar WebVTT, as dash.js and Shaka play it)."""
    if not tracks:
        return xml
    root = ET.fromstring(xml)
    ns = {"d": DASH_NS}
    for period in root.findall("d:Period", ns):
        ids = [int(a.get("id")) for a in period.findall("d:AdaptationSet", ns) if (a.get("id") or "").isdigit()]
        next_id = max(ids, default=-1) + 1
        for offset, track in enumerate(tracks):
            aset = ET.SubElement(period, f"{{{DASH_NS}}}AdaptationSet", id=str(next_id + offset),
                                 contentType=track.dash_content_type, mimeType=track.dash_mime_type,
                                 lang=track.language)
            ET.SubElement(aset, f"{{{DASH_NS}}}Role", schemeIdUri="urn:mpeg:dash:role:2011", value=track.dash_role)
            ET.SubElement(aset, f"{{{DASH_NS}}}Label").text = track.name
            rep = ET.SubElement(aset, f"{{{DASH_NS}}}Representation", id=f"{track.group_id}-{track.language}",
                                bandwidth=str(track.dash_bandwidth))
            if track.dash_codecs:
                rep.set("codecs", track.dash_codecs)
            ET.SubElement(rep, f"{{{DASH_NS}}}BaseURL").text = posixpath.relpath(
                track.dash_key, posixpath.dirname(manifest_key))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
