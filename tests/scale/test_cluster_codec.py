"""The bytes instances exchange through Redis (``live/cluster/codec.py``), held byte for byte.

Every expected value below is written out by hand from the format as it has been published
since the cluster link first shipped, not produced by the encoder: an instance of this
version and one of the version before must read each other's messages, so a change here is
a change of the wire format. The last tests run the link itself against a private Redis
and feed it bad messages: each is dropped and logged, and the link goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from klasblik import protocol as p
from klasblik.protocol.errors import KlasblikError
from klasblik.server.live.cluster import codec
from klasblik.server.live.cluster.codec import (
    ClusterMessageError,
    Demand,
    DemandEntry,
    FrameMessage,
    Place,
    Presence,
    StatusMessage,
    TabsMessage,
)
from klasblik.server.live.cluster.link import Cluster
from klasblik.server.live.hub import AgentConn, Hub, Viewer
from klasblik.server.settings import load_settings
from klasblik.server.storage.latest import LatestWriter
from tests.support.cluster import RedisProcess
from tests.support.live import TOKEN
from tests.support.timing import timeout, wait_for

INSTANCE = "web1-4242-a1b2c3"

#: an agent frame: KBF1, header version 1, kind 2 (focus), encoding 1 (JPEG), flags 0,
#: 16 x 9 pixels, seq 7, captured at 1000 ms; then the first bytes of a JPEG
AGENT_FRAME = (
    b"KBF1\x01\x02\x01\x00"
    b"\x00\x10\x00\x09"
    b"\x00\x00\x00\x07"
    b"\x00\x00\x00\x00\x00\x00\x03\xe8"
    # the start of a 16x9 JPEG: start of image and its frame header (SOF0)
    b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x09\x00\x10\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
)
#: location 3, no home location
PLACE_3_NONE = b"\x00\x00\x00\x03\xff\xff\xff\xff"


def _code(call: Any, *args: Any) -> str:
    with pytest.raises(ClusterMessageError) as caught:
        call(*args)
    assert isinstance(caught.value, KlasblikError)
    assert isinstance(caught.value, ValueError)
    return caught.value.code


# ---- names ----------------------------------------------------------------------------


def test_channel_and_key_names():
    """The demand channel, a student's channel and a student's presence key are named as
    they always were."""
    assert codec.DEMAND_CHANNEL == b"kb:demand"
    assert codec.student_channel(42) == b"kb:s:42"
    assert codec.presence_key(42) == b"kb:p:42"
    assert codec.student_channel(0) == b"kb:s:0"


def test_student_channel_name_parses_back():
    """A student channel name gives back its student id."""
    assert codec.parse_student_channel(b"kb:s:42") == 42
    assert codec.parse_student_channel(codec.student_channel(987654)) == 987654


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("kb:s:42", codec.NOT_BYTES),
        (None, codec.NOT_BYTES),
        (b"kb:p:42", codec.BAD_CHANNEL),
        (b"kb:demand", codec.BAD_CHANNEL),
        (b"kb:s:", codec.BAD_CHANNEL),
        (b"kb:s:x", codec.BAD_CHANNEL),
        (b"kb:s:-1", codec.BAD_CHANNEL),
        (b"kb:s:042", codec.BAD_CHANNEL),
        (b"kb:s: 42", codec.BAD_CHANNEL),
        (b"kb:s:4_2", codec.BAD_CHANNEL),
    ],
)
def test_bad_channel_name_is_refused(channel, code):
    """A channel name that is not kb:s:<decimal id> is refused with its code."""
    assert _code(codec.parse_student_channel, channel) == code


def test_instance_name_has_no_spaces():
    """An instance name never holds a space, so a presence value can carry it."""
    assert codec.instance_name("web1", 4242, "a1b2c3") == "web1-4242-a1b2c3"
    assert codec.instance_name("my host", 7, "ffffff") == "my_host-7-ffffff"


# ---- place ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("place", "packed"),
    [
        (Place(3, 7), b"\x00\x00\x00\x03\x00\x00\x00\x07"),
        (Place(3, None), PLACE_3_NONE),
        (Place(None, 12), b"\xff\xff\xff\xff\x00\x00\x00\x0c"),
        (Place(None, None), b"\xff\xff\xff\xff\xff\xff\xff\xff"),
        (Place(0, 2**31 - 1), b"\x00\x00\x00\x00\x7f\xff\xff\xff"),
    ],
)
def test_place_is_two_big_endian_int32(place, packed):
    """A place is the current and home location as big-endian signed 32-bit integers,
    -1 for none, and reads back as the same place."""
    assert codec.pack_place(place) == packed
    assert codec.unpack_place(packed) == place
    assert codec.unpack_place(b"F" + packed, 1) == place


def test_negative_location_reads_as_none():
    """Any negative location id reads as none, not only -1."""
    assert codec.unpack_place(b"\xff\xff\xff\xfe\x80\x00\x00\x00") == Place(None, None)


def test_place_too_short_is_truncated():
    """Fewer than 8 bytes where a place should be is refused as truncated."""
    assert _code(codec.unpack_place, b"\x00\x00\x00\x03\xff\xff\xff") == codec.TRUNCATED
    assert _code(codec.unpack_place, b"F" + PLACE_3_NONE[:7], 1) == codec.TRUNCATED


def test_location_beyond_int32_is_refused_when_encoding():
    """A location id that does not fit 32 signed bits is refused before it reaches Redis."""
    assert _code(codec.pack_place, Place(2**31, None)) == codec.OUT_OF_RANGE
    assert _code(codec.encode_frame, Place(None, -(2**31) - 1), AGENT_FRAME) == codec.OUT_OF_RANGE


# ---- frames ---------------------------------------------------------------------------


def test_agent_frame_literal_is_a_valid_frame():
    """The frame these tests relay is one the protocol accepts from an agent."""
    header = p.decode_frame(AGENT_FRAME)
    assert (header.kind, header.encoding, header.width, header.height) == (2, 1, 16, 9)


def test_frame_message_bytes():
    """A frame message is "F", the device's place and the agent frame as it came."""
    assert codec.encode_frame(Place(3, None), AGENT_FRAME) == (
        b"F\x00\x00\x00\x03\xff\xff\xff\xff"
        b"KBF1\x01\x02\x01\x00\x00\x10\x00\x09\x00\x00\x00\x07"
        b"\x00\x00\x00\x00\x00\x00\x03\xe8"
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x09\x00\x10\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )


def test_frame_message_round_trip():
    """A frame message reads back as its place, the same frame bytes and the header's kind."""
    msg = codec.decode_student_message(5, b"F" + PLACE_3_NONE + AGENT_FRAME)
    assert msg == FrameMessage(Place(3, None), AGENT_FRAME)
    assert isinstance(msg, FrameMessage)
    assert msg.kind == p.FrameKind.FOCUS
    assert codec.decode_student_message(5, codec.encode_frame(msg.place, msg.frame)) == msg


# ---- tabs -----------------------------------------------------------------------------

TABS = [{"title": "Één", "url": "https://x.example/", "active": True, "window": 0}]
TABS_TEXT = (
    '{"type":"tabs","student_id":5,"tabs":'
    '[{"title":"Één","url":"https://x.example/","active":true,"window":0}]}'
)


def test_tabs_text_is_the_dashboard_message():
    """The text of a tabs message is the dashboards' compact tabs message, not escaped."""
    assert codec.tabs_text(5, TABS) == TABS_TEXT


def test_tabs_message_bytes():
    """A tabs message is "T", the device's place and the tabs text in UTF-8."""
    assert codec.encode_tabs(Place(1, 2), TABS_TEXT) == (
        b"T\x00\x00\x00\x01\x00\x00\x00\x02"
        b'{"type":"tabs","student_id":5,"tabs":'
        b'[{"title":"\xc3\x89\xc3\xa9n","url":"https://x.example/","active":true,"window":0}]}'
    )


def test_tabs_message_round_trip():
    """A tabs message reads back as its place and the same text."""
    data = codec.encode_tabs(Place(1, 2), TABS_TEXT)
    assert codec.decode_student_message(5, data) == TabsMessage(Place(1, 2), TABS_TEXT)


# ---- status ---------------------------------------------------------------------------

STATE = {
    "online": True,
    "last_seen": "2025-03-01T08:30:00Z",
    "capture_error": "scherm geweigerd — ç",
    "elsewhere": False,
    "mode": "grid",
}
STATUS_BYTES = (
    b'S{"i":"web1-4242-a1b2c3","s":{"online":true,"last_seen":"2025-03-01T08:30:00Z",'
    b'"capture_error":"scherm geweigerd \\u2014 \\u00e7","elsewhere":false,"mode":"grid"},'
    b'"d":[3,null]}'
)


def test_status_message_bytes():
    """A status message is "S" and compact ASCII JSON: instance, state in its own key
    order, and the device's location and home location with null for none."""
    assert codec.encode_status(INSTANCE, STATE, Place(3, None)) == STATUS_BYTES


def test_status_message_round_trip():
    """A status message reads back as its instance, state and place, with last_seen as
    an aware time."""
    msg = codec.decode_student_message(5, STATUS_BYTES)
    assert msg == StatusMessage(INSTANCE, STATE, Place(3, None))
    assert isinstance(msg, StatusMessage)
    assert msg.online is True
    assert msg.last_seen == dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)
    assert codec.encode_status(msg.instance, msg.state, msg.place) == STATUS_BYTES


def test_offline_status_without_last_seen():
    """An offline status with last_seen null says offline and no time."""
    data = b'S{"i":"a","s":{"online":false,"last_seen":null},"d":[-1,5]}'
    msg = codec.decode_student_message(5, data)
    assert isinstance(msg, StatusMessage)
    assert (msg.online, msg.last_seen, msg.place) == (False, None, Place(None, 5))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-01T08:30:00Z", dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)),
        ("2025-03-01T09:30:00+01:00", dt.datetime(2025, 3, 1, 8, 30, tzinfo=dt.UTC)),
        (None, None),
        ("", None),
    ],
)
def test_last_seen_parses(value, expected):
    """last_seen is ISO 8601 with Z for UTC; null or empty is no time."""
    assert codec.parse_seen(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01T00:00:00Z", 1740817800, True, ["x"]])
def test_bad_last_seen_is_refused(value):
    """A last_seen that is not an ISO time (or null) is refused as a bad field."""
    assert _code(codec.parse_seen, value) == codec.BAD_FIELD


# ---- student channel: hostile input ---------------------------------------------------

PLACE = PLACE_3_NONE


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("F" + "x" * 40, codec.NOT_BYTES),
        (None, codec.NOT_BYTES),
        (bytearray(b"F" + PLACE + AGENT_FRAME), codec.NOT_BYTES),
        (b"", codec.EMPTY),
        (b"X" + PLACE + AGENT_FRAME, codec.UNKNOWN_KIND),
        (b"f" + PLACE + AGENT_FRAME, codec.UNKNOWN_KIND),
        (b"F", codec.TRUNCATED),
        (b"F\x00\x00\x00", codec.TRUNCATED),
        (b"F" + PLACE, codec.TRUNCATED),
        (b"F" + PLACE + AGENT_FRAME[:24], codec.TRUNCATED),
        (b"F" + PLACE + b"GIF89a" + bytes(30), codec.NOT_A_FRAME),
        (b"F" + PLACE[:4] + AGENT_FRAME, codec.NOT_A_FRAME),
        (b"T", codec.TRUNCATED),
        (b"T" + PLACE[:5], codec.TRUNCATED),
        (b"T" + PLACE + b"\xff\xfe{}", codec.NOT_UTF8),
        (b"T" + PLACE, codec.NOT_JSON),
        (b"T" + PLACE + b"not json", codec.NOT_JSON),
        (b"T" + PLACE + b"[1,2]", codec.NOT_JSON),
        (b"T" + PLACE + b'{"type":"status","student_id":5}', codec.BAD_FIELD),
        (b"T" + PLACE + b'{"type":"tabs","student_id":6,"tabs":[]}', codec.BAD_FIELD),
        (b"T" + PLACE + b'{"type":"tabs","student_id":"5","tabs":[]}', codec.BAD_FIELD),
        (b"T" + PLACE + b'{"type":"tabs","tabs":[]}', codec.BAD_FIELD),
        (b"S", codec.NOT_JSON),
        (b"S{", codec.NOT_JSON),
        (b"S" + b"[" * 100_000, codec.NOT_JSON),
        (b"S\xc3(", codec.NOT_UTF8),
        (b'S"i"', codec.NOT_JSON),
        (b'S{"s":{},"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"","s":{},"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":7,"s":{},"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"\\ud800","s":{},"d":[1,2]}', codec.NOT_UTF8),
        (b'S{"i":"a","d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":[],"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{}}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":[1]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":[1,2,3]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":{"0":1,"1":2}}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":["3",null]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":[3.0,null]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{},"d":[true,null]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{"online":false,"last_seen":"yesterday"},"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{"online":true,"last_seen":12},"d":[1,2]}', codec.BAD_FIELD),
        (b'S{"i":"a","s":{"capture_error":"x\\udc00"},"d":[1,2]}', codec.NOT_UTF8),
    ],
)
def test_bad_student_message_is_refused(data, code):
    """A student message that is not a whole frame, tabs or status message is refused
    with the code that says what is wrong with it."""
    assert _code(codec.decode_student_message, 5, data) == code


def test_tabs_student_must_be_a_number_not_true():
    """A tabs message's student_id of true is not student 1."""
    data = b"T" + PLACE + b'{"type":"tabs","student_id":true,"tabs":[]}'
    assert _code(codec.decode_student_message, 1, data) == codec.BAD_FIELD


def test_garbage_never_escapes_as_another_error():
    """Random bytes after each kind byte are read or refused, never raise anything but
    ClusterMessageError."""
    rng = random.Random(20250301)
    for _ in range(3000):
        kind = rng.choice([b"F", b"T", b"S", b"", b"\x00"])
        body = rng.randbytes(rng.randint(0, 64))
        if rng.random() < 0.3:
            body = PLACE + body
        try:
            codec.decode_student_message(5, kind + body)
        except ClusterMessageError:
            pass
        try:
            codec.decode_demand(body)
        except ClusterMessageError:
            pass
        try:
            codec.parse_presence(body)
        except ClusterMessageError:
            pass


# ---- demand ---------------------------------------------------------------------------

JAN = DemandEntry("grid", "Jan Smit", 3, 3)
ANS = DemandEntry("focus", "Ans Öztürk", None, 3)


def test_demand_message_bytes():
    """A demand message is compact ASCII JSON: instance, full, then per student its
    viewers' [mode, name, location, home location], each once, ordered by repr."""
    demand = {12: [JAN, ANS, JAN], 4: []}
    assert codec.encode_demand(INSTANCE, demand, full=True) == (
        b'{"i":"web1-4242-a1b2c3","full":true,"d":{"12":'
        b'[["focus","Ans \\u00d6zt\\u00fcrk",null,3],["grid","Jan Smit",3,3]],"4":[]}}'
    )


def test_demand_entries_are_ordered_by_repr():
    """Entries are ordered by the repr of their tuple, as every version orders them: an
    id before none, and 10 before 9."""
    entries = [
        DemandEntry("grid", "A", None, 1),
        DemandEntry("grid", "A", 9, None),
        DemandEntry("grid", "A", 10, None),
    ]
    assert codec.encode_demand("x", {1: entries}, full=False) == (
        b'{"i":"x","full":false,"d":{"1":[["grid","A",10,null],["grid","A",9,null],'
        b'["grid","A",null,1]]}}'
    )


def test_demand_asking_for_state_bytes():
    """A demand that asks for the current state carries "ask":true after "full":false."""
    assert codec.encode_demand(INSTANCE, {7: [JAN]}, full=False, ask=True) == (
        b'{"i":"web1-4242-a1b2c3","full":false,"ask":true,"d":{"7":[["grid","Jan Smit",3,3]]}}'
    )


def test_goodbye_demand_bytes():
    """An instance leaving publishes full demand for nobody."""
    assert codec.encode_demand(INSTANCE, {}, full=True) == (
        b'{"i":"web1-4242-a1b2c3","full":true,"d":{}}'
    )


def test_demand_of_an_instance_that_reads_bundles_bytes():
    """An instance that reads bundles says "b":true after "full" (and "ask")."""
    assert codec.encode_demand(INSTANCE, {7: [JAN]}, full=False, ask=True, bundles=True) == (
        b'{"i":"web1-4242-a1b2c3","full":false,"ask":true,"b":true,'
        b'"d":{"7":[["grid","Jan Smit",3,3]]}}'
    )
    assert codec.decode_demand(b'{"i":"a","full":true,"b":true,"d":{}}').bundles is True
    # an older version says nothing, and so reads student channels only
    assert codec.decode_demand(b'{"i":"a","full":true,"d":{}}').bundles is False
    assert _code(codec.decode_demand, b'{"i":"a","full":true,"b":1,"d":{}}') == codec.BAD_FIELD


def test_demand_round_trip():
    """A demand message reads back as its instance, flags and entries in wire order."""
    data = codec.encode_demand(INSTANCE, {12: [JAN, ANS], 4: []}, full=True)
    assert codec.decode_demand(data) == Demand(INSTANCE, True, False, {12: (ANS, JAN), 4: ()})
    asked = codec.decode_demand(codec.encode_demand(INSTANCE, {7: [JAN]}, full=False, ask=True))
    assert asked == Demand(INSTANCE, False, True, {7: (JAN,)})


def test_demand_reads_negative_location_as_none_and_ignores_extra_keys():
    """A location of -1 in a demand entry is none, and keys a newer version adds are
    ignored."""
    data = b'{"i":"b","full":false,"v":2,"d":{"3":[["focus","X",-1,5]]}}'
    assert codec.decode_demand(data) == Demand(
        "b", False, False, {3: (DemandEntry("focus", "X", None, 5),)}
    )


def _demand(d: Any, **top: Any) -> bytes:
    return json.dumps({"i": "b", "full": False, **top, "d": d}).encode()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ('{"i":"b","full":false,"d":{}}', codec.NOT_BYTES),
        (None, codec.NOT_BYTES),
        (b"", codec.NOT_JSON),
        (b"{", codec.NOT_JSON),
        (b"\xff", codec.NOT_UTF8),
        (b"[]", codec.NOT_JSON),
        (b"null", codec.NOT_JSON),
        (b"[" * 100_000, codec.NOT_JSON),
        (b'{"full":false,"d":{}}', codec.BAD_FIELD),
        (b'{"i":"","full":false,"d":{}}', codec.BAD_FIELD),
        (b'{"i":5,"full":false,"d":{}}', codec.BAD_FIELD),
        (b'{"i":"b","d":{}}', codec.BAD_FIELD),
        (b'{"i":"b","full":1,"d":{}}', codec.BAD_FIELD),
        (b'{"i":"b","full":"yes","d":{}}', codec.BAD_FIELD),
        (b'{"i":"b","full":false,"ask":"1","d":{}}', codec.BAD_FIELD),
        (b'{"i":"b","full":false}', codec.BAD_FIELD),
        (b'{"i":"b","full":false,"d":[]}', codec.BAD_FIELD),
        (_demand({"x": []}), codec.BAD_FIELD),
        (_demand({"-1": []}), codec.BAD_FIELD),
        (_demand({"01": []}), codec.BAD_FIELD),
        (_demand({" 1": []}), codec.BAD_FIELD),
        (_demand({"\uff11": []}), codec.BAD_FIELD),
        (_demand({"\ud800": []}), codec.BAD_FIELD),
        (_demand({"1": {}}), codec.BAD_FIELD),
        (_demand({"1": "grid"}), codec.BAD_FIELD),
        (_demand({"1": ["grid", "X", 1, 1]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "X", 1]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "X", 1, 1, 1]]}), codec.BAD_FIELD),
        (_demand({"1": ["abcd"]}), codec.BAD_FIELD),
        (_demand({"1": [["off", "X", 1, 1]]}), codec.UNKNOWN_MODE),
        (_demand({"1": [["paused", "X", 1, 1]]}), codec.UNKNOWN_MODE),
        (_demand({"1": [[None, "X", 1, 1]]}), codec.UNKNOWN_MODE),
        (_demand({"1": [["grid", None, 1, 1]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", 5, 1, 1]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "\udc00", 1, 1]]}), codec.NOT_UTF8),
        (_demand({"1": [["grid", "X", "3", 1]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "X", 3.0, 1]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "X", 1, True]]}), codec.BAD_FIELD),
        (_demand({"1": [["grid", "X", 1, 1]], "2": [["zoom", "Y", 1, 1]]}), codec.UNKNOWN_MODE),
    ],
)
def test_bad_demand_is_refused(data, code):
    """A demand message with anything wrong, in any entry, is refused whole with the code
    that says what is wrong."""
    assert _code(codec.decode_demand, data) == code


# ---- bundles --------------------------------------------------------------------------


def test_inbox_channel_name():
    assert codec.inbox_channel(INSTANCE) == b"kb:i:web1-4242-a1b2c3"


def test_bundle_bytes():
    """A bundle is B, then per item the student id in 8 bytes and the length in 4 (both
    big-endian), then the student message as a student's channel carries it; a frame
    given in parts is the same bytes as the frame message."""
    bundle = codec.Bundle()
    bundle.add(7, *codec.frame_parts(Place(3, None), AGENT_FRAME))
    bundle.add(300, b"T" + PLACE_3_NONE + b"{}")
    frame_message = b"F" + PLACE_3_NONE + AGENT_FRAME
    assert bytes(bundle) == (
        b"B"
        + b"\x00\x00\x00\x00\x00\x00\x00\x07"
        + len(frame_message).to_bytes(4, "big")
        + frame_message
        + b"\x00\x00\x00\x00\x00\x00\x01\x2c\x00\x00\x00\x0b"
        + b"T"
        + PLACE_3_NONE
        + b"{}"
    )
    assert bundle.size == len(bytes(bundle))
    assert codec.encode_frame(Place(3, None), AGENT_FRAME) == frame_message


def test_bundle_round_trip_then_each_item_reads_as_a_student_message():
    bundle = codec.Bundle()
    bundle.add(7, *codec.frame_parts(Place(3, None), AGENT_FRAME))
    bundle.add(8, codec.encode_tabs(Place(None, 4), codec.tabs_text(8, [])))
    items = codec.decode_bundle(bytes(bundle))
    assert [sid for sid, _ in items] == [7, 8]
    assert codec.decode_student_message(7, items[0][1]) == FrameMessage(Place(3, None), AGENT_FRAME)
    tabs = codec.decode_student_message(8, items[1][1])
    assert isinstance(tabs, TabsMessage) and tabs.place == Place(None, 4)
    assert codec.decode_bundle(b"B") == []


def test_a_student_id_that_does_not_fit_is_refused_when_writing():
    assert _code(codec.Bundle().add, -1, b"x") == codec.OUT_OF_RANGE
    assert _code(codec.Bundle().add, 1 << 64, b"x") == codec.OUT_OF_RANGE


def _one_item(sid: int, message: bytes) -> bytes:
    bundle = codec.Bundle()
    bundle.add(sid, message)
    return bytes(bundle)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("B", codec.NOT_BYTES),
        (b"", codec.EMPTY),
        (b"F" + PLACE_3_NONE + AGENT_FRAME, codec.UNKNOWN_KIND),
        (b"B\x00\x00\x00", codec.TRUNCATED),  # an item's header cut short
        (_one_item(7, b"T" + PLACE_3_NONE + b"{}")[:-1], codec.TRUNCATED),  # its body
        (_one_item(7, b"S{}") + b"\x00", codec.TRUNCATED),  # a byte after the last item
    ],
)
def test_bad_bundle_is_refused_whole(data, code):
    """A bundle whose items do not fill it exactly is refused with its code, before any
    item is read."""
    assert _code(codec.decode_bundle, data) == code


def test_random_bundles_are_read_or_refused_never_anything_else():
    rng = random.Random(20261202)
    for _ in range(2000):
        data = b"B" + rng.randbytes(rng.randrange(0, 40))
        try:
            items = codec.decode_bundle(data)
        except ClusterMessageError:
            continue
        assert 1 + sum(12 + len(m) for _, m in items) == len(data)


# ---- recheck --------------------------------------------------------------------------


def test_recheck_message_bytes():
    """A recheck names its instance, what to look up again, and the students, sorted."""
    assert codec.RECHECK_CHANNEL == b"kb:recheck"
    assert codec.encode_recheck(INSTANCE, "no_view", [7, 3, 7]) == (
        b'{"i":"web1-4242-a1b2c3","w":"no_view","s":[3,7]}'
    )


def test_recheck_round_trip_ignores_extra_keys():
    data = b'{"i":"web1-4242-a1b2c3","w":"no_view","s":[3,7],"x":1}'
    assert codec.decode_recheck(data) == codec.Recheck(INSTANCE, "no_view", (3, 7))


def test_recheck_of_nothing_or_too_much_is_not_written():
    for what, ids in (("no_view", []), ("everything", [1]), ("no_view", range(1, 1002))):
        with pytest.raises(ValueError):
            codec.encode_recheck(INSTANCE, what, ids)


def _recheck(students: Any, what: Any = "no_view") -> bytes:
    return json.dumps({"i": INSTANCE, "w": what, "s": students}).encode()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("text", codec.NOT_BYTES),
        (b"\xff", codec.NOT_UTF8),
        (b"[1]", codec.NOT_JSON),
        (_recheck([1], "erase_everyone"), codec.UNKNOWN_KIND),
        (_recheck([1], None), codec.UNKNOWN_KIND),
        (_recheck([]), codec.BAD_FIELD),
        (_recheck("1"), codec.BAD_FIELD),
        (_recheck(list(range(1, 1002))), codec.BAD_FIELD),
        (_recheck([True]), codec.OUT_OF_RANGE),
        (_recheck([0]), codec.OUT_OF_RANGE),
        (_recheck([2**31]), codec.OUT_OF_RANGE),
        (_recheck([1.0]), codec.OUT_OF_RANGE),
        (_recheck(["1"]), codec.OUT_OF_RANGE),
    ],
)
def test_bad_recheck_is_refused(data, code):
    """A recheck with anything wrong is refused whole, with the code that says what."""
    assert _code(codec.decode_recheck, data) == code


# ---- presence -------------------------------------------------------------------------


def test_presence_value_bytes():
    """A presence value is the instance, the device's location and its home location,
    separated by one space, -1 for none."""
    assert codec.encode_presence(INSTANCE, Place(3, None)) == b"web1-4242-a1b2c3 3 -1"
    assert codec.encode_presence(INSTANCE, Place(None, 12)) == b"web1-4242-a1b2c3 -1 12"


def test_presence_round_trip():
    """A presence value reads back as the instance and the device's place."""
    assert codec.parse_presence(b"web1-4242-a1b2c3 3 -1") == Presence(INSTANCE, Place(3, None))
    value = codec.encode_presence(INSTANCE, Place(None, 12))
    assert codec.parse_presence(value) == Presence(INSTANCE, Place(None, 12))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("web1 3 -1", codec.NOT_BYTES),
        (3, codec.NOT_BYTES),
        (None, codec.NOT_BYTES),
        (b"", codec.BAD_PRESENCE),
        (b"web1", codec.BAD_PRESENCE),
        (b"web1 3", codec.BAD_PRESENCE),
        (b"web1 3 -1 9", codec.BAD_PRESENCE),
        (b"web1  3 -1", codec.BAD_PRESENCE),
        (b" 3 -1", codec.BAD_PRESENCE),
        (b"web1 x -1", codec.BAD_PRESENCE),
        (b"web1 +3 -1", codec.BAD_PRESENCE),
        (b"web1 3 -1\n", codec.BAD_PRESENCE),
        (b"web1 3.0 -1", codec.BAD_PRESENCE),
        (b"\xffweb1 3 -1", codec.NOT_UTF8),
    ],
)
def test_bad_presence_is_refused(value, code):
    """A presence value not of the form "<instance> <location> <home location>" is
    refused with its code."""
    assert _code(codec.parse_presence, value) == code


def test_error_codes_are_documented_and_distinct():
    """Every error code is a module constant, distinct, and named in the module's text."""
    codes = [
        codec.NOT_BYTES,
        codec.EMPTY,
        codec.UNKNOWN_KIND,
        codec.TRUNCATED,
        codec.NOT_A_FRAME,
        codec.NOT_UTF8,
        codec.NOT_JSON,
        codec.BAD_FIELD,
        codec.UNKNOWN_MODE,
        codec.BAD_CHANNEL,
        codec.BAD_PRESENCE,
        codec.OUT_OF_RANGE,
    ]
    assert len(set(codes)) == len(codes)
    error = ClusterMessageError(codec.TRUNCATED, "short")
    assert (error.code, error.message, error.status) == ("truncated", "short", 500)
    assert repr(error) == "ClusterMessageError('truncated', 'short')"


# ---- the link and bad messages --------------------------------------------------------


class _Box:
    """Stands in for an outbox: keeps what the hub queues."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def put(self, item: Any) -> bool:
        self.items.append(item)
        return True

    def put_latest(self, key: Any, item: Any) -> bool:
        self.items.append(item)
        return True

    async def close(self) -> None:
        pass

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(i) for i in self.items if isinstance(i, str)]


@contextlib.asynccontextmanager
async def _linked(tmp_path: Any) -> AsyncIterator[tuple[Hub, Cluster, aioredis.Redis]]:
    """A hub whose location rule lets everyone see everything, its link to a private
    Redis (connected), and a plain Redis client to write to it as another instance."""
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    hub = Hub(load_settings(env={"KLASBLIK_ENROLLMENT_TOKEN": TOKEN}), LatestWriter(None, 0))  # type: ignore[arg-type]
    hub.gate = lambda viewer, device: None  # everyone may see everything here
    cluster = Cluster(hub, redis.url(0), refresh_s=30)
    r = aioredis.Redis.from_url(redis.url(0))
    try:
        cluster.start()
        await wait_for(lambda: cluster.up, timeout(10), "the link connected")
        yield hub, cluster, r
    finally:
        await cluster.close()
        await r.aclose()
        redis.stop()


def _viewer_of_7(hub: Hub) -> _Box:
    """A viewer here of student 7; what the hub queues for it."""
    box = _Box()
    viewer = Viewer(1, "Juf Ans", None, box, "127.0.0.1", 3, 3)  # type: ignore[arg-type]
    hub.add_viewer(viewer)
    hub.subscribe(viewer, 1, [7])
    return box


async def test_link_drops_bad_messages_and_goes_on(tmp_path, caplog):
    """Bad messages on the demand channel and a student's channel, and a bad presence
    value, are dropped, counted and logged once per code; the link stays up and then
    applies good messages written as every version writes them."""
    caplog.set_level(logging.WARNING, logger="klasblik.server.live.cluster.link")
    async with _linked(tmp_path) as (hub, cluster, r):
        viewer_box = _viewer_of_7(hub)

        async def subscribed() -> bool:
            return dict(await r.pubsub_numsub(b"kb:s:7")).get(b"kb:s:7") == 1

        await wait_for(subscribed, timeout(10), "the link subscribed to student 7")

        bad_student = [
            b"",  # empty
            b"X" + PLACE + AGENT_FRAME,  # unknown_kind
            b"F\x00\x00",  # truncated
            b"S{",  # not_json
            b"T" + PLACE + b"\xff\xfe",  # not_utf8
        ]
        bad_demand = [
            b"{",  # not_json
            b'{"i":"other","full":true,"d":{"7":[["off","X",null,null]]}}',  # unknown_mode
        ]
        for data in bad_student:
            await r.publish(b"kb:s:7", data)
        for data in bad_demand:
            await r.publish(b"kb:demand", data)
        # a good status from another instance, as every version writes it
        await r.publish(
            b"kb:s:7",
            b'S{"i":"web2-1-abcdef","s":{"online":true,"last_seen":"2025-03-01T08:30:00Z",'
            b'"capture_error":null,"elsewhere":false,"mode":"grid"},"d":[3,3]}',
        )

        def online() -> bool:
            return any(
                m.get("type") == "status" and m["student_id"] == 7 and m["state"]["online"]
                for m in viewer_box.messages()
            )

        await wait_for(online, timeout(10), "the good status reached the viewer")
        assert cluster.rejected == len(bad_student) + len(bad_demand)
        assert cluster.up
        assert cluster.remote_device(7) == Place(3, 3)

        await r.set(b"kb:p:7", b"garbage")
        await cluster.load_presence([7])  # does not raise; student 7 stays as it was
        assert cluster.rejected == len(bad_student) + len(bad_demand) + 1
        assert hub.status(7)["online"] is True

        # an agent here, and a good demand for it from another instance
        agent_box = _Box()
        conn = AgentConn(9, "Bram", None, agent_box, "127.0.0.1", "desktop", 3, 3)  # type: ignore[arg-type]
        hub.attach_agent(conn)
        await r.publish(
            b"kb:demand",
            b'{"i":"web2-1-abcdef","full":false,"d":{"9":[["focus","Meneer Kok",3,3]]}}',
        )

        def watched() -> bool:
            return any(
                m.get("type") == "watch" and m["mode"] == "focus" and m["viewers"] == ["Meneer Kok"]
                for m in agent_box.messages()
            )

        await wait_for(
            watched, timeout(10), "the agent told to send for the other instance's viewer"
        )
        assert await r.get(b"kb:p:9") == f"{cluster.instance} 3 3".encode()
        assert cluster.up

        assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
        warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
        codes = ["empty", "unknown_kind", "truncated", "not_json", "not_utf8", "unknown_mode"]
        # not_json came twice, once on each channel, and was logged once
        for code in [*codes, "bad_presence"]:
            assert sum(f": {code}: " in w for w in warnings) == 1, (code, warnings)


async def test_the_location_rule_reads_a_student_held_elsewhere_at_its_place(tmp_path):
    """For a student whose agent another instance holds, the hub answers the location rule
    by the place that instance last said, as for an agent here: the subscribe reply's
    state, tabs and stored picture follow it (a reply that asked with no device offered
    the picture of a student at home to a teacher at school)."""
    async with _linked(tmp_path) as (hub, cluster, r):
        # a teacher at location 3 sees devices at location 3 only
        hub.gate = lambda viewer, device: (
            None if device.location_id == viewer.location_id else p.ErrorCode.ELSEWHERE
        )
        viewer = Viewer(1, "Juf Ans", None, _Box(), "127.0.0.1", 3, 3)  # type: ignore[arg-type]
        hub.add_viewer(viewer)
        hub.subscribe(viewer, 1, [7])

        async def subscribed() -> bool:
            return dict(await r.pubsub_numsub(b"kb:s:7")).get(b"kb:s:7") == 1

        await wait_for(subscribed, timeout(10), "the link subscribed to student 7")
        assert hub.blocked_student(viewer, 7) is None  # offline: no device known
        for place, why in (([5, 5], p.ErrorCode.ELSEWHERE), ([3, 3], None)):
            await r.publish(
                b"kb:s:7",
                b'S{"i":"web2-1-abcdef","s":{"online":true,"last_seen":"2025-03-01T08:30:00Z",'
                b'"capture_error":null,"elsewhere":false,"mode":"grid"},"d":'
                + json.dumps(place).encode()
                + b"}",
            )
            await wait_for(
                lambda place=place: cluster.remote_device(7) == Place(*place),
                timeout(10),
                f"the status from the other instance read (device at {place})",
            )
            assert hub.blocked_student(viewer, 7) == why
            state = hub.status(7, None, viewer)
            assert state["online"] is True
            assert state["elsewhere"] is (why == p.ErrorCode.ELSEWHERE)
            assert state["mode"] == ("off" if why else "grid")

        # an agent here at location 5: the same answer from its connection
        conn = AgentConn(9, "Bram", None, _Box(), "127.0.0.1", "desktop", 5, 5)  # type: ignore[arg-type]
        hub.attach_agent(conn)
        assert hub.blocked_student(viewer, 9) == p.ErrorCode.ELSEWHERE
        assert hub.blocked_student(viewer, 8) is None


async def test_closing_the_link_while_a_write_is_in_flight_ends(tmp_path):
    """A link closed just as an agent arrives (its presence write to Redis in flight)
    stops: redis-py swallowed the cancellation inside the pipeline and the publisher then
    waited for ever, so a server's shutdown hung. Ten times, each with a new link."""
    async with _linked(tmp_path) as (hub, cluster, _r):
        url = cluster.url
        for n in range(10):
            link = Cluster(hub, url, refresh_s=30)
            link.start()
            await wait_for(lambda link=link: link.up, timeout(10), f"link {n} connected")
            conn = AgentConn(100 + n, "Bram", None, _Box(), "127.0.0.1", "desktop", 3, 3)  # type: ignore[arg-type]
            hub.attach_agent(conn)
            await asyncio.wait_for(link.close(), timeout(5))
            assert link._task is None


async def test_bundles_only_where_every_wanting_instance_reads_them(tmp_path):
    """Mixed versions during a rolling upgrade: while an instance that does not read
    bundles (no "b" in its demand) wants a student, that student's frames go on its
    channel, as an older version reads them; once only bundle readers want it, they go
    to their inboxes. Each frame goes one way only, so no viewer gets it twice."""
    old, new = "web0-1-aaaaaa", "web2-1-bbbbbb"
    student_channel, inbox = b"kb:s:9", codec.inbox_channel(new)
    heard: list[tuple[bytes, bytes]] = []
    frames = [AGENT_FRAME[:-1] + bytes([i]) for i in range(6)]

    async with _linked(tmp_path) as (hub, cluster, r):
        # its own client: what it hears is read here, in the waits, never by a task left
        # reading when the test ends
        listener_client = aioredis.Redis.from_url(cluster.url)
        listener = listener_client.pubsub()

        async def drain() -> None:
            while True:
                msg = await listener.get_message(ignore_subscribe_messages=True, timeout=0.01)
                if msg is None:
                    return
                if msg["type"] in ("message", "pmessage"):
                    heard.append((msg["channel"], msg["data"]))

        def frames_on(channel: bytes) -> list[bytes]:
            """The agent frames heard on a student channel or in an inbox's bundles."""
            out: list[bytes] = []
            for ch, data in heard:
                if ch != channel:
                    continue
                bundled = ch.startswith(b"kb:i:")
                for m in [m for _, m in codec.decode_bundle(data)] if bundled else [data]:
                    decoded = codec.decode_student_message(9, m)
                    if isinstance(decoded, FrameMessage):
                        out.append(decoded.frame)
            return out

        async def heard_on(channel: bytes, expected: list[bytes], what: str) -> None:
            async def arrived() -> bool:
                await drain()
                return frames_on(channel) == expected

            await wait_for(arrived, timeout(10), lambda: f"{what}: {len(heard)} heard")

        async def demand(inst: str, entries: list[list[Any]], bundles: bool) -> None:
            flag = ',"b":true' if bundles else ""
            body = f'{{"i":"{inst}","full":true{flag},"d":{{"9":{json.dumps(entries)}}}}}'
            await asyncio.wait_for(r.publish(b"kb:demand", body.encode()), timeout(10))

        async def listening() -> bool:
            await drain()
            numsub = dict(await r.pubsub_numsub(student_channel))
            return numsub.get(student_channel) == 1 and await r.pubsub_numpat() == 1

        try:
            await listener.subscribe(student_channel)
            await listener.psubscribe(b"kb:i:*")
            await wait_for(listening, timeout(10), "the listener subscribed")
            conn = AgentConn(9, "Bram", None, _Box(), "127.0.0.1", "desktop", 3, 3)  # type: ignore[arg-type]
            hub.attach_agent(conn)

            await demand(old, [["grid", "Juf Ans", 3, 3]], bundles=False)
            await wait_for(lambda: 9 in cluster._remote, timeout(10), "the old instance's demand")
            assert cluster.publish_frame(conn, frames[0])
            await heard_on(student_channel, frames[:1], "frame 0 on the channel")

            await demand(new, [["grid", "Meneer Kok", 3, 3]], bundles=True)
            await wait_for(lambda: len(cluster._remote.get(9, {})) == 2, timeout(10), "both want 9")
            assert cluster.publish_frame(conn, frames[1])  # the old one still wants it
            await heard_on(student_channel, frames[:2], "frame 1 on the channel")

            await demand(old, [], bundles=False)  # the old one leaves
            await wait_for(
                lambda: list(cluster._remote.get(9, {})) == [new], timeout(10), "the old one left"
            )
            for f in frames[2:4]:  # in one bundle or two, in order
                assert cluster.publish_frame(conn, f)
            await heard_on(inbox, frames[2:4], "frames 2 and 3 in the inbox")

            await demand(new, [["grid", "Meneer Kok", 3, 3]], bundles=False)  # rolled back
            await wait_for(lambda: new not in cluster._readers, timeout(10), "the rollback")
            assert cluster.publish_frame(conn, frames[4])
            await heard_on(student_channel, [*frames[:2], frames[4]], "frame 4 on the channel")

            await demand(new, [], bundles=False)  # nobody wants it any more: nothing is sent
            await wait_for(lambda: 9 not in cluster._remote, timeout(10), "nobody wants 9")
            assert not cluster.publish_frame(conn, frames[5])
            assert frames_on(student_channel) == [frames[0], frames[1], frames[4]]
            assert frames_on(inbox) == frames[2:4]
            assert cluster.bundled == 2
        finally:
            await listener.aclose()
            await listener_client.aclose()


async def test_a_bundle_applies_its_good_messages_and_a_broken_one_nothing(tmp_path, caplog):
    """On an instance's inbox: a bad message inside a good bundle is dropped alone (the
    frames and tabs around it reach the viewer); a bundle whose items do not add up is
    dropped whole, its good first frame included; the link goes on."""
    caplog.set_level(logging.WARNING, logger="klasblik.server.live.cluster.link")
    async with _linked(tmp_path) as (hub, cluster, r):
        box = _viewer_of_7(hub)

        async def listening() -> bool:
            return dict(await r.pubsub_numsub(cluster.inbox)).get(cluster.inbox) == 1

        await wait_for(listening, timeout(10), "the link reads its inbox")

        def frames() -> list[Any]:
            return [i for i in box.items if not isinstance(i, str)]

        good = codec.Bundle()
        good.add(7, *codec.frame_parts(Place(3, 3), AGENT_FRAME))
        good.add(7, b"X" + PLACE + AGENT_FRAME)  # unknown kind: dropped alone
        good.add(7, codec.encode_tabs(Place(3, 3), codec.tabs_text(7, [{"title": "Les"}])))
        await r.publish(cluster.inbox, bytes(good))

        def tabs() -> bool:
            return any(m.get("type") == "tabs" for m in box.messages())

        await wait_for(tabs, timeout(10), "the tabs after the bad message")
        assert len(frames()) == 1
        assert cluster.rejected == 1

        broken = codec.Bundle()
        broken.add(7, *codec.frame_parts(Place(3, 3), AGENT_FRAME))
        await r.publish(cluster.inbox, bytes(broken)[:-1])
        later = codec.Bundle()
        later.add(7, codec.encode_tabs(Place(3, 3), codec.tabs_text(7, [{"title": "Pauze"}])))
        await r.publish(cluster.inbox, bytes(later))

        def pauze() -> bool:
            return any("Pauze" in json.dumps(m) for m in box.messages())

        await wait_for(pauze, timeout(10), "the bundle after the broken one")
        assert len(frames()) == 1  # nothing of the broken bundle
        assert cluster.rejected == 2
        assert cluster.up
        warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
        assert sum(": unknown_kind: " in w for w in warnings) == 1, warnings
        assert sum(": truncated: " in w for w in warnings) == 1, warnings
