"""BCP-47 language tags (RFC 5646) as the platform takes them, for captions and audio
tracks alike: one check, one canonical form, one wording of a refusal. The gateway turns a
refusal into a 400 (gateway.validation.language_param), metadata_svc into INVALID_ARGUMENT.

The tag is checked strictly (ASCII only, the whole string, bounded in length) before
langcodes, which is lenient on its own (it reads "en_US", and looks words up), checks its
subtags against the IANA registry and puts it in canonical form.
"""
from __future__ import annotations

import re

import langcodes

MAX_TAG_CHARS = 35  # RFC 5646's advice for a buffer holding a tag
# "undetermined", "no linguistic content", "missing", "multiple": no language a viewer could pick.
REFUSED_LANGUAGES = frozenset({"und", "zxx", "mis", "mul"})
# language, script, region, variants; extensions and private use ("x-...") are refused.
_SHAPE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
                    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*")
_PRIVATE_USE = re.compile(r"q[a-t][a-z]")  # qaa..qtz: local meanings, nothing a player names


class LanguageTagError(ValueError):
    """A language tag the platform does not take; the message says why, for the caller."""


def canonical_language(tag: str) -> str:
    """The canonical form of a BCP-47 tag ("EN-us" -> "en-US", "zh-hant-tw" -> "zh-Hant-TW");
    LanguageTagError unless it is a well-formed, registered tag of a particular language."""
    if len(tag) > MAX_TAG_CHARS or not _SHAPE.fullmatch(tag) or not langcodes.tag_is_valid(tag):
        raise LanguageTagError(f"language {tag[:40]!r} is not a valid BCP-47 tag (e.g. en, pt-BR, zh-Hant)")
    canonical = langcodes.standardize_tag(tag)
    primary = canonical.split("-")[0].lower()
    if primary in REFUSED_LANGUAGES or _PRIVATE_USE.fullmatch(primary):
        raise LanguageTagError(f"language {tag!r} names no particular language")
    return canonical


def language_name(tag: str) -> str:
    """The language's name in itself ("fr" -> "Français", "pt-BR" -> "Português (Brasil)"),
    as player menus show it; the tag itself where the data has no name for it."""
    try:
        lang = langcodes.Language.get(tag)
        name = lang.autonym() or lang.display_name()
    except (LookupError, ValueError):
        return tag
    return name[:1].upper() + name[1:]
