"""Captions of a video in the metadata store: the checks CreateCaption makes (a valid
language, at most one caption per language, an automatic caption never over an uploaded
one) and the conversion between the stored record and the Caption message."""
from __future__ import annotations

import re

from longtail.metadata.v1 import caption_pb2
from longtail_common.captions import MAX_LABEL_CHARS, language_label
from longtail_common.language_tags import LanguageTagError, canonical_language
from longtail_common.ports import CaptionRecord, MetadataStore, validate_object_key

K = caption_pb2.CaptionKind
MAX_ENGINE_CHARS = 64


class CaptionRefused(ValueError):
    """The caption cannot be recorded; `code` is the gRPC status name to answer."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def from_record(record: CaptionRecord) -> caption_pb2.Caption:
    caption = caption_pb2.Caption()
    caption.ParseFromString(record.payload)
    return caption


def video_captions(store: MetadataStore, video_id: str) -> list[caption_pb2.Caption]:
    return [from_record(r) for r in store.list_captions(video_id)]


def checked_caption(store: MetadataStore, video_id: str, asked: caption_pb2.Caption) -> caption_pb2.Caption:
    """The caption to store for `asked`: language canonical, name and label set; refuses
    (CaptionRefused) a bad field, and an automatic caption where an uploaded one is."""
    try:
        language = canonical_language(asked.language)
    except LanguageTagError as exc:
        raise CaptionRefused("INVALID_ARGUMENT", str(exc)) from None
    if asked.kind not in (K.CAPTION_KIND_SUBTITLES, K.CAPTION_KIND_CAPTIONS):
        raise CaptionRefused("INVALID_ARGUMENT", "kind must be SUBTITLES or CAPTIONS")
    prefix = f"videos/{video_id}/captions/{language}/"
    for key in (asked.object_key, asked.playlist_object_key):
        try:
            validate_object_key(key)
        except ValueError:
            raise CaptionRefused("INVALID_ARGUMENT", f"invalid object key {key!r}") from None
        if not key.startswith(prefix):
            raise CaptionRefused("INVALID_ARGUMENT", f"a caption's files are under {prefix}")
    if len(asked.label) > MAX_LABEL_CHARS or re.search(r"[\x00-\x1f\"]", asked.label):
        raise CaptionRefused("INVALID_ARGUMENT", f"label: at most {MAX_LABEL_CHARS} characters, no quotes")
    if len(asked.engine) > MAX_ENGINE_CHARS:
        raise CaptionRefused("INVALID_ARGUMENT", "engine name too long")
    if asked.automatic:
        present = next((c for c in video_captions(store, video_id) if c.language == language), None)
        if present is not None and not present.automatic:
            raise CaptionRefused("ALREADY_EXISTS", f"video {video_id} has an uploaded {language} caption")
    caption = caption_pb2.Caption()
    caption.CopyFrom(asked)
    caption.language, caption.video_id = language, video_id
    caption.name = f"videos/{video_id}/captions/{language}"
    if not caption.label.strip():
        caption.label = language_label(language) + (" (automatic)" if caption.automatic else "")
    caption.create_time.GetCurrentTime()
    return caption


def to_record(caption: caption_pb2.Caption) -> CaptionRecord:
    return CaptionRecord(caption.video_id, caption.language, caption.SerializeToString(deterministic=True))
