"""Which codec families the transcoder encodes: the configured lists, validated."""
from __future__ import annotations

from longtail_common.config import Config
from transcoder_svc import ladder

H264 = "h264"  # every video has it: every client plays it


def known_families(names, what: str) -> list[str]:
    """`names` lower-cased, without repeats, in order; ValueError naming `what` if one is
    not a codec family the transcoder encodes."""
    families = list(dict.fromkeys(c.lower() for c in names))
    unknown = [c for c in families if c not in ladder.CODEC_FAMILIES]
    if unknown:
        raise ValueError(f"{what}: unknown codec families {unknown}; known: {list(ladder.CODEC_FAMILIES)}")
    return families


def codec_families(cfg: Config) -> list[str]:
    """H.264 first and always, then the configured extra families."""
    return known_families([H264, *cfg.transcoder.codecs], "transcoder.codecs")


def popular_codecs(cfg: Config) -> list[str]:
    """The families a codec upgrade may add (validated like `codecs`)."""
    return known_families(cfg.transcoder.popular_codecs, "transcoder.popular_codecs")
