"""The one BCP-47 check captions and audio tracks share (longtail_common.language_tags):
what it takes and its canonical form, what it refuses, and how a refusal reaches callers:
400 at the gateway, INVALID_ARGUMENT from metadata_svc for an audio track's language."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from longtail.metadata.v1 import metadata_service_pb2 as mpb
from longtail.metadata.v1 import video_pb2
from longtail_common.language_tags import LanguageTagError, canonical_language, language_name
from gateway.errors import ApiError
from gateway.validation import language_param
from tests.inprocess_metadata import inprocess_metadata

GOOD = [("en", "en"), ("EN-us", "en-US"), ("pt-BR", "pt-BR"), ("PT-br", "pt-BR"), ("zh-Hant-TW", "zh-Hant-TW"),
        ("zh-hant-tw", "zh-Hant-TW"), ("zh-Hant", "zh-Hant"), ("es-419", "es-419"), ("sl-rozaj", "sl-rozaj"),
        ("de-1901", "de-1901"), ("iw", "he")]
BAD = ["", "e", "english", "en_US", "de_DE", "en-", "en--US", "en US", " en", "en\n", "../en", "xx", "x-klingon",
       "qq-ZZZ", "de-DE-de-DE", "en-u-ca-gregory", "٣٣", "en-٤١٩", "ｅｎ", "é", "a" * 200, "en-" + "a" * 40,
       "und", "zxx", "mul", "qaa"]


@pytest.mark.parametrize(("tag", "canonical"), GOOD)
def test_good_tags_come_back_canonical(tag, canonical):
    assert canonical_language(tag) == canonical
    assert language_param(tag) == canonical


@pytest.mark.parametrize("tag", BAD)
def test_bad_tags_are_refused_with_one_wording(tag):
    with pytest.raises(LanguageTagError, match=r"^language .* (is not a valid BCP-47 tag|names no particular language)"):
        canonical_language(tag)
    with pytest.raises(ApiError) as err:
        language_param(tag)
    assert (err.value.status, err.value.code) == (400, "INVALID_ARGUMENT")


def test_names_are_the_languages_own():
    assert [language_name(t) for t in ("en", "fr", "de", "pt-BR")] == [
        "English", "Français", "Deutsch", "Português (Brasil)"]


@pytest.fixture()
def metadata(tmp_path):
    with inprocess_metadata(tmp_path, video_id="v1") as stub:
        yield stub


def record_track(stub, language: str) -> video_pb2.Video:
    track = video_pb2.AudioTrack(language=language, kind=video_pb2.AUDIO_TRACK_KIND_DUB, version="ab12")
    return stub.UpdateVideo(mpb.UpdateVideoRequest(video=video_pb2.Video(id="v1", audio_tracks=[track]),
                                                   update_mask=field_mask_pb2.FieldMask(paths=["audio_tracks"])))


@pytest.mark.parametrize("language", ["en_US", "de-", "und", "pt-br"])  # the last: valid, but not canonical
def test_metadata_refuses_an_audio_track_in_a_bad_language(metadata, language):
    with pytest.raises(grpc.RpcError) as err:
        record_track(metadata, language)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not metadata.GetVideo(mpb.GetVideoRequest(id="v1")).audio_tracks


def test_metadata_records_an_audio_track_in_a_canonical_language(metadata):
    assert [t.language for t in record_track(metadata, "pt-BR").audio_tracks] == ["pt-BR"]
