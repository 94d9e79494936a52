"""longtail_common.proto_enums: each closed set's string and enum fields stay in step."""
from __future__ import annotations

import pytest

from longtail.events.v1 import events_pb2
from longtail_common.proto_enums import (
    CONTAINER_FORMAT,
    PLACEMENT_POLICY,
    STREAM_PROTOCOL,
    THUMBNAIL_KIND,
    VIEW_KIND,
)

PAIRS = [VIEW_KIND, STREAM_PROTOCOL, THUMBNAIL_KIND, CONTAINER_FORMAT, PLACEMENT_POLICY]
IDS = [p.enum_field for p in PAIRS]


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_table_covers_every_enum_value_once(pair):
    fields = pair.message_type.DESCRIPTOR.fields_by_name
    assert fields[pair.string_field].type == fields[pair.string_field].TYPE_STRING
    assert fields[pair.string_field].GetOptions().deprecated
    enum = fields[pair.enum_field].enum_type
    named = {v.number for v in enum.values if v.number != 0}
    assert sorted(pair.numbers.values()) == sorted(named)


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_writer_sets_both_and_reader_gets_the_string_back(pair):
    for text, number in pair.numbers.items():
        message = pair.message_type(**pair.fields(text))
        assert getattr(message, pair.string_field) == text
        assert getattr(message, pair.enum_field) == number
        assert pair.text(message) == text


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_reader_falls_back_to_the_string_of_an_old_row(pair):
    text = next(iter(pair.numbers))
    old = pair.message_type(**{pair.string_field: text})
    assert getattr(old, pair.enum_field) == 0
    assert pair.text(old) == text


@pytest.mark.parametrize("pair", PAIRS, ids=IDS)
def test_reader_prefers_the_enum(pair):
    text, number = next(iter(pair.numbers.items()))
    message = pair.message_type(**{pair.string_field: "", pair.enum_field: number})
    assert pair.text(message) == text


def test_a_string_outside_the_set_leaves_the_enum_unspecified():
    event = events_pb2.ViewEvent(**VIEW_KIND.fields("pause"))
    assert event.view_kind == events_pb2.VIEW_KIND_UNSPECIFIED
    assert VIEW_KIND.text(event) == "pause"


def test_the_strings_in_use_today():
    assert set(VIEW_KIND.numbers) == {"start", "progress", "complete"}
    assert set(STREAM_PROTOCOL.numbers) == {"hls", "dash"}
    assert set(THUMBNAIL_KIND.numbers) == {"poster", "storyboard", "storyboard_vtt", "preview"}
    assert set(CONTAINER_FORMAT.numbers) == {"mpegts", "fmp4", "webm"}
    # placement_svc writes "cold-start-<family>" and "model-<family>" for its model families.
    families = {f"{policy}-{family}" for policy in ("cold-start", "model") for family in ("mlp", "gbm")}
    assert set(PLACEMENT_POLICY.numbers) == {"new-video-origin", "rule-yesterday", "first-request-fill", *families}
