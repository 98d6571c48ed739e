"""What the cluster link (``link.py``) writes to Redis and reads back, as a pure module:
no Redis, no asyncio, no hub, no clock. Every instance of every version reads and writes
these bytes, so they only ever change together with a plan for mixed versions;
``tests/scale/test_cluster_codec.py`` holds them byte for byte.

Names::

    kb:demand               the channel every instance publishes its demand on
    kb:recheck              "look again now": students whose do-not-view entry changed
    kb:s:<student id>       a student's channel: frames, tabs and status of its agent
    kb:i:<instance>         an instance's inbox: bundles of student messages for it
    kb:p:<student id>       a student's presence key: which instance holds its agent

Values (ids in decimal ASCII; a location id of -1, or any negative one, reads as none)::

    presence  <instance> SP <location> SP <home location>       e.g. b"web1-42-a1b2c3 3 -1"
    frame     "F" place <the agent frame as the agent sent it: KBF1, header, image>
    tabs      "T" place <the dashboards' tabs message, JSON text in UTF-8>
    status    "S" {"i":instance,"s":state,"d":[location,home location]}
    bundle    "B" then items, each: student id (8 bytes), length (4 bytes), a frame or
              tabs message of that length, as a student's channel carries it
    demand    {"i":instance,"full":bool,["ask":true,]["b":true,]"d":{"<student id>":[entry, ...]}}
              entry = [mode ("grid" or "focus"), viewer name, location, home location]
    recheck   {"i":instance,"w":"no_view","s":[student id, ...]}   (at most 1000 ids)

``place`` is 8 bytes: the device's current and home location as two big-endian signed
32-bit integers, -1 for none. The JSON of status and demand is compact (no spaces) and
ASCII (anything else escaped as ``\\uXXXX``), with the keys in the order shown and null
for a location that is none; a demand message lists each student's entries once, sorted
by the ``repr`` of their (mode, name, location, home location) tuple. Status and demand
come from the instance named in ``"i"``; ``"full"`` means the message replaces all of
that instance's demand, ``"ask"`` that it wants the current tabs and status of the
students listed, ``"b"`` that it reads bundles on its inbox. A recheck carries no decision, only which students to look up again in
the database (the instance holding their agents applies what the database says), so a
forged one can cost a query but never stop or start a capture. A peer's own extra JSON
keys are ignored.

**Bundles, and instances of an older version.** An instance that holds an agent sends the
frames and tabs of that student in bundles to the inboxes of the instances that want
them (one Redis message for many frames, instead of one per frame on the student's
channel), but only while *every* instance wanting the student said ``"b"`` in its demand.
When one of them did not (an instance of an older version, during a rolling upgrade), it
publishes on the student's channel as before; instances of this version keep subscribing
to the channels of the students they want, so they read both, and each message goes one
way only. Status messages always go on the student's channel. Ids and lengths in a bundle
are big-endian unsigned; a bundle whose items do not add up to its length is refused
whole, a bad message inside a good bundle alone.

Every decoder raises :class:`ClusterMessageError`, with one of the codes below, for
anything it cannot read; nothing else escapes a decoder, whatever the input.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from klasblik import protocol as p
from klasblik.protocol.errors import KlasblikError

__all__ = [
    "BAD_CHANNEL",
    "BAD_FIELD",
    "BAD_PRESENCE",
    "BUNDLE",
    "DEMAND_CHANNEL",
    "EMPTY",
    "FRAME",
    "MAX_RECHECK_IDS",
    "MODES",
    "NOT_A_FRAME",
    "NOT_BYTES",
    "NOT_JSON",
    "NOT_UTF8",
    "NOWHERE",
    "OUT_OF_RANGE",
    "PLACE_SIZE",
    "RECHECK_CHANNEL",
    "RECHECK_KINDS",
    "STATUS",
    "TABS",
    "TRUNCATED",
    "UNKNOWN_KIND",
    "UNKNOWN_MODE",
    "Bundle",
    "ClusterMessageError",
    "Demand",
    "DemandEntry",
    "FrameMessage",
    "Place",
    "Presence",
    "Recheck",
    "StatusMessage",
    "StudentMessage",
    "TabsMessage",
    "decode_bundle",
    "decode_demand",
    "decode_recheck",
    "decode_student_message",
    "encode_demand",
    "encode_frame",
    "encode_presence",
    "encode_recheck",
    "encode_status",
    "encode_tabs",
    "frame_parts",
    "inbox_channel",
    "instance_name",
    "pack_place",
    "parse_presence",
    "parse_seen",
    "parse_student_channel",
    "presence_key",
    "student_channel",
    "tabs_text",
    "unpack_place",
]

# ---- errors ---------------------------------------------------------------------------

#: a value that is not ``bytes`` (a Redis client set to decode responses, or a bug)
NOT_BYTES: Final = "not_bytes"
#: a student message with no bytes at all
EMPTY: Final = "empty"
#: a student message whose first byte is not ``F``, ``T`` or ``S``, or a bundle's not ``B``
UNKNOWN_KIND: Final = "unknown_kind"
#: shorter than its fixed part: the 8-byte place, or the 24-byte agent frame header
#: and at least one byte of image; a bundle whose items run past its end
TRUNCATED: Final = "truncated"
#: a frame message whose agent frame does not start with ``KBF1``
NOT_A_FRAME: Final = "not_a_frame"
#: text (tabs, status, demand, an instance name) that is not UTF-8
NOT_UTF8: Final = "not_utf8"
#: status, demand or tabs text that is not JSON, or not a JSON object
NOT_JSON: Final = "not_json"
#: a JSON field missing, of the wrong type or out of its range (the message says which)
BAD_FIELD: Final = "bad_field"
#: a demand entry whose mode is not ``grid`` or ``focus``
UNKNOWN_MODE: Final = "unknown_mode"
#: a channel name that is not ``kb:s:<student id>``
BAD_CHANNEL: Final = "bad_channel"
#: a presence value that is not ``<instance> <location> <home location>``
BAD_PRESENCE: Final = "bad_presence"
#: a location id that does not fit the place's signed 32 bits (raised when encoding)
OUT_OF_RANGE: Final = "out_of_range"


class ClusterMessageError(KlasblikError, ValueError):
    """A value read from (or meant for) Redis that this codec cannot read or write;
    ``code`` is one of the constants of this module and says which rule it broke."""

    code = "bad_cluster_message"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)


# ---- names ----------------------------------------------------------------------------

DEMAND_CHANNEL: Final = b"kb:demand"
RECHECK_CHANNEL: Final = b"kb:recheck"
#: what a recheck asks to look up again
RECHECK_KINDS: Final = ("no_view",)
MAX_RECHECK_IDS: Final = 1000
_STUDENT_PREFIX: Final = b"kb:s:"
_PRESENCE_PREFIX: Final = b"kb:p:"
_INBOX_PREFIX: Final = b"kb:i:"


def student_channel(student_id: int) -> bytes:
    """The channel of one student's frames, tabs and status: ``kb:s:<student id>``."""
    return b"kb:s:%d" % student_id


def presence_key(student_id: int) -> bytes:
    """The key naming the instance that holds a student's agent: ``kb:p:<student id>``."""
    return b"kb:p:%d" % student_id


def inbox_channel(instance: str) -> bytes:
    """The channel an instance reads bundles on: ``kb:i:<instance>``."""
    return _INBOX_PREFIX + instance.encode()


def parse_student_channel(channel: object) -> int:
    """The student id of a ``kb:s:<student id>`` channel name."""
    if not isinstance(channel, bytes):
        raise ClusterMessageError(NOT_BYTES, f"channel name is {type(channel).__name__}")
    if not channel.startswith(_STUDENT_PREFIX):
        raise ClusterMessageError(BAD_CHANNEL, f"not a student channel: {channel[:40]!r}")
    sid = _decimal(channel[len(_STUDENT_PREFIX) :])
    if sid is None:
        raise ClusterMessageError(BAD_CHANNEL, f"no student id in {channel[:40]!r}")
    return sid


def instance_name(hostname: str, pid: int, token: str) -> str:
    """A name for this instance that presence values can carry: no spaces."""
    return f"{hostname.replace(' ', '_')}-{pid}-{token}"


# ---- place ----------------------------------------------------------------------------

_PLACE: Final = struct.Struct(">ii")  # the device's current and home location (-1: none)
PLACE_SIZE: Final = _PLACE.size  # 8


@dataclass(frozen=True, slots=True)
class Place:
    """Where a device (or a viewer on another instance) is, as the location rule reads it."""

    location_id: int | None
    home_location_id: int | None


#: a device whose place is not known: off-site at no location
NOWHERE: Final = Place(None, None)


def pack_place(place: Place) -> bytes:
    """The 8 bytes of a place: two big-endian signed 32-bit ids, -1 for none."""
    loc, home = place.location_id, place.home_location_id
    try:
        return _PLACE.pack(-1 if loc is None else loc, -1 if home is None else home)
    except struct.error:
        raise ClusterMessageError(OUT_OF_RANGE, f"location ids {loc}, {home} do not fit") from None


def unpack_place(data: bytes, offset: int = 0) -> Place:
    """The place packed at ``offset``; a negative id reads as none."""
    if len(data) < offset + PLACE_SIZE:
        raise ClusterMessageError(
            TRUNCATED, f"{len(data)} bytes end before the place at {offset}..{offset + PLACE_SIZE}"
        )
    loc, home = _PLACE.unpack_from(data, offset)
    return Place(None if loc < 0 else loc, None if home < 0 else home)


# ---- student channel messages ---------------------------------------------------------

FRAME: Final = b"F"
TABS: Final = b"T"
STATUS: Final = b"S"
_BODY: Final = 1 + PLACE_SIZE  # where the frame or tabs text starts
_KIND_AT: Final = 5  # the kind byte of the agent frame header (after magic and version)


@dataclass(frozen=True, slots=True)
class FrameMessage:
    """An agent frame relayed from the instance holding the agent."""

    place: Place
    #: the agent frame exactly as the agent sent it (24-byte header, then the image)
    frame: bytes

    @property
    def kind(self) -> int:
        """The frame kind from its header (:class:`~klasblik.protocol.FrameKind`)."""
        return self.frame[_KIND_AT]


@dataclass(frozen=True, slots=True)
class TabsMessage:
    """The dashboards' ``tabs`` message of a student, as text to pass on as it is."""

    place: Place
    text: str


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """A student's status as the instance holding (or just losing) the agent sees it."""

    instance: str
    #: the hub's status dict (``online``, ``last_seen``, ``capture_error``, ``mode``, ...)
    state: dict[str, Any]
    place: Place

    @property
    def online(self) -> bool:
        return bool(self.state.get("online"))

    @property
    def last_seen(self) -> dt.datetime | None:
        """When the agent was last seen; None when the state does not say."""
        return parse_seen(self.state.get("last_seen"))


StudentMessage = FrameMessage | TabsMessage | StatusMessage


def encode_frame(place: Place, frame: bytes) -> bytes:
    """``F``, the device's place, then the agent frame as it came."""
    return FRAME + pack_place(place) + frame


def frame_parts(place: Place, frame: bytes) -> tuple[bytes, bytes]:
    """A frame message in two parts (``F`` and the place, then the frame as it came), for
    a :class:`Bundle` to join without copying the frame first."""
    return FRAME + pack_place(place), frame


def encode_tabs(place: Place, text: str) -> bytes:
    """``T``, the device's place, then the dashboards' tabs message (see :func:`tabs_text`)."""
    return TABS + pack_place(place) + text.encode()


def tabs_text(student_id: int, tabs: list[dict[str, Any]]) -> str:
    """The dashboards' ``tabs`` message, the text a tabs message carries."""
    return p.encode_message({"type": "tabs", "student_id": student_id, "tabs": tabs})


def encode_status(instance: str, state: Mapping[str, Any], place: Place) -> bytes:
    """``S`` and compact ASCII JSON: the sending instance, the status and the device's place."""
    body = {"i": instance, "s": state, "d": [place.location_id, place.home_location_id]}
    return STATUS + json.dumps(body, separators=(",", ":")).encode()


def decode_student_message(student_id: int, data: object) -> StudentMessage:
    """Read one message from ``kb:s:<student_id>``, or one item of a bundle for it."""
    if not isinstance(data, bytes):
        raise ClusterMessageError(NOT_BYTES, f"message is {type(data).__name__}")
    kind = data[:1]
    if kind == FRAME:
        place = unpack_place(data, 1)
        frame = data[_BODY:]
        if len(frame) <= p.FRAME_HEADER_SIZE:
            raise ClusterMessageError(
                TRUNCATED, f"frame of {len(frame)} bytes: no image after the 24-byte header"
            )
        if frame[:4] != p.FRAME_MAGIC:
            raise ClusterMessageError(NOT_A_FRAME, f"frame starts with {frame[:4]!r}, not KBF1")
        return FrameMessage(place, frame)
    if kind == TABS:
        place = unpack_place(data, 1)
        text = _utf8(data[_BODY:], "tabs")
        msg = _json_object(text, "tabs")
        if msg.get("type") != "tabs":
            raise ClusterMessageError(BAD_FIELD, f"tabs text of type {msg.get('type')!r}")
        if not _is_int(msg.get("student_id")) or msg["student_id"] != student_id:
            raise ClusterMessageError(
                BAD_FIELD,
                f"tabs of student {msg.get('student_id')!r} on the channel of {student_id}",
            )
        return TabsMessage(place, text)
    if kind == STATUS:
        body = _json_object(_utf8(data[1:], "status"), "status")
        instance = _instance(body)
        state = body.get("s")
        if not isinstance(state, dict):
            raise ClusterMessageError(BAD_FIELD, f"status 's' is {type(state).__name__}")
        where = body.get("d")
        if not isinstance(where, list) or len(where) != 2:
            raise ClusterMessageError(BAD_FIELD, f"status 'd' is not [location, home]: {where!r}")
        parse_seen(state.get("last_seen"))  # refused now, not when the agent goes offline
        _sendable(json.dumps(state, ensure_ascii=False), "status")  # it goes on to dashboards
        return StatusMessage(
            instance, state, Place(_location(where[0], "d"), _location(where[1], "d"))
        )
    if not kind:
        raise ClusterMessageError(EMPTY, "empty message")
    raise ClusterMessageError(UNKNOWN_KIND, f"unknown message kind {kind!r}")


# ---- bundles ---------------------------------------------------------------------------

BUNDLE: Final = b"B"
_ITEM: Final = struct.Struct(">QI")  # student id, length of the message that follows


class Bundle:
    """A bundle being written: :meth:`add` student messages, then ``bytes(bundle)``."""

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = [BUNDLE]
        #: bytes so far, header included
        self.size = 1

    def add(self, student_id: int, *message: bytes) -> None:
        """One student message, given whole or in parts (:func:`frame_parts`)."""
        length = sum(len(part) for part in message)
        try:
            self.parts.append(_ITEM.pack(student_id, length))
        except struct.error:
            raise ClusterMessageError(
                OUT_OF_RANGE, f"student {student_id} or length {length} does not fit"
            ) from None
        self.parts.extend(message)
        self.size += _ITEM.size + length

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


def decode_bundle(data: object) -> list[tuple[int, bytes]]:
    """The (student id, message) items of a bundle read from an inbox, in order; each
    message is read with :func:`decode_student_message`. Refused whole unless the items
    fill the bundle exactly."""
    if not isinstance(data, bytes):
        raise ClusterMessageError(NOT_BYTES, f"bundle is {type(data).__name__}")
    if not data:
        raise ClusterMessageError(EMPTY, "empty bundle")
    if data[:1] != BUNDLE:
        raise ClusterMessageError(UNKNOWN_KIND, f"inbox message of kind {data[:1]!r}")
    items: list[tuple[int, bytes]] = []
    at, end = 1, len(data)
    head = _ITEM.size
    while at < end:
        if end - at < head:
            raise ClusterMessageError(TRUNCATED, f"bundle ends {end - at} bytes into an item")
        sid, length = _ITEM.unpack_from(data, at)
        at += head
        if end - at < length:
            raise ClusterMessageError(
                TRUNCATED, f"bundle item of {length} bytes with {end - at} left"
            )
        items.append((sid, data[at : at + length]))
        at += length
    return items


def parse_seen(value: object) -> dt.datetime | None:
    """A status's ``last_seen`` (ISO 8601, ``Z`` for UTC); None for null or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClusterMessageError(BAD_FIELD, f"last_seen is {type(value).__name__}")
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ClusterMessageError(BAD_FIELD, f"last_seen {value[:40]!r} is not a time") from None


# ---- demand ---------------------------------------------------------------------------

MODES: Final = ("grid", "focus")


@dataclass(frozen=True, slots=True)
class DemandEntry:
    """One viewer on another instance: the mode it wants, its name and where it is (it
    satisfies the hub's ``Placed``, so the location rule can read it as the viewer)."""

    mode: str
    name: str
    location_id: int | None
    home_location_id: int | None


@dataclass(frozen=True, slots=True)
class Demand:
    """One instance's demand message."""

    instance: str
    #: the message replaces everything this instance wanted before
    full: bool
    #: the instance asks for the current tabs and status of the students listed
    ask: bool
    #: student id -> that instance's viewers of the student; empty: none any more
    students: Mapping[int, tuple[DemandEntry, ...]]
    #: the instance reads bundles on its inbox (an older version does not say so)
    bundles: bool = False


def _entry_order(e: DemandEntry) -> str:
    return repr((e.mode, e.name, e.location_id, e.home_location_id))


def encode_demand(
    instance: str,
    demand: Mapping[int, Iterable[DemandEntry]],
    *,
    full: bool,
    ask: bool = False,
    bundles: bool = False,
) -> bytes:
    """Compact ASCII JSON of this instance's demand for the students in ``demand`` (in its
    order); each student's entries once, in their canonical order."""
    body: dict[str, Any] = {"i": instance, "full": full}
    if ask:
        body["ask"] = True
    if bundles:
        body["b"] = True
    body["d"] = {str(sid): _entries(entries) for sid, entries in demand.items()}
    return json.dumps(body, separators=(",", ":")).encode()


def _entries(entries: Iterable[DemandEntry]) -> list[list[Any]]:
    unique = list(set(entries))
    if len(unique) > 1:  # most students have one viewer: nothing to sort
        unique.sort(key=_entry_order)
    return [[e.mode, e.name, e.location_id, e.home_location_id] for e in unique]


def decode_demand(data: object) -> Demand:
    """Read one message from ``kb:demand``; a bad entry refuses the whole message."""
    body, instance = _instance_message(data, "demand")
    full = body.get("full")
    ask = body.get("ask", False)
    bundles = body.get("b", False)
    if not isinstance(full, bool) or not isinstance(ask, bool) or not isinstance(bundles, bool):
        raise ClusterMessageError(
            BAD_FIELD, f"demand 'full' {full!r}, 'ask' {ask!r}, 'b' {bundles!r}"
        )
    raw = body.get("d")
    if not isinstance(raw, dict):
        raise ClusterMessageError(BAD_FIELD, f"demand 'd' is {type(raw).__name__}")
    students: dict[int, tuple[DemandEntry, ...]] = {}
    for key, entries in raw.items():
        sid = _decimal(key.encode()) if key.isascii() else None
        if sid is None:
            raise ClusterMessageError(BAD_FIELD, f"demand for student {key[:40]!r}")
        if not isinstance(entries, list):
            raise ClusterMessageError(BAD_FIELD, f"demand for {sid} is {type(entries).__name__}")
        students[sid] = tuple(_demand_entry(e) for e in entries)
    return Demand(instance, full, ask, students, bundles)


def _demand_entry(raw: object) -> DemandEntry:
    if not isinstance(raw, list) or len(raw) != 4:
        raise ClusterMessageError(BAD_FIELD, f"demand entry {raw!r:.80} is not 4 fields")
    mode, name, loc, home = raw
    if mode not in MODES:
        raise ClusterMessageError(UNKNOWN_MODE, f"unknown mode in {raw!r:.80}")
    if not isinstance(name, str):
        raise ClusterMessageError(BAD_FIELD, f"viewer name in {raw!r:.80}")
    return DemandEntry(
        mode, _sendable(name, "viewer name"), _location(loc, "entry"), _location(home, "entry")
    )


# ---- recheck --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recheck:
    """Students whose ``what`` (``RECHECK_KINDS``) changed on instance ``instance``."""

    instance: str
    what: str
    students: tuple[int, ...]


def encode_recheck(instance: str, what: str, student_ids: Iterable[int]) -> bytes:
    """A ``kb:recheck`` message; ``what`` one of ``RECHECK_KINDS``, ids sorted, at most
    :data:`MAX_RECHECK_IDS` (the caller sends more in several messages)."""
    ids = sorted(set(student_ids))
    if what not in RECHECK_KINDS or not ids or len(ids) > MAX_RECHECK_IDS:
        raise ValueError(f"recheck of {what!r} for {len(ids)} students")
    return json.dumps({"i": instance, "w": what, "s": ids}, separators=(",", ":")).encode()


def decode_recheck(data: object) -> Recheck:
    """Read one message from ``kb:recheck``; anything odd refuses the whole message."""
    body, instance = _instance_message(data, "recheck")
    what = body.get("w")
    if what not in RECHECK_KINDS:
        raise ClusterMessageError(UNKNOWN_KIND, f"recheck of {what!r:.40}")
    raw = body.get("s")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_RECHECK_IDS:
        raise ClusterMessageError(BAD_FIELD, "recheck 's' is not a list of 1 to 1000 ids")
    ids = []
    for sid in raw:
        if not isinstance(sid, int) or isinstance(sid, bool) or not 1 <= sid <= p.MAX_ID:
            raise ClusterMessageError(OUT_OF_RANGE, f"recheck student id {sid!r:.40}")
        ids.append(sid)
    return Recheck(instance, str(what), tuple(ids))


# ---- presence -------------------------------------------------------------------------

_PRESENCE: Final = re.compile(rb"([^ ]+) (-?[0-9]+) (-?[0-9]+)")


@dataclass(frozen=True, slots=True)
class Presence:
    """Which instance holds a student's agent, and where the device is."""

    instance: str
    place: Place


def encode_presence(instance: str, place: Place) -> bytes:
    """``<instance> <location> <home location>``, -1 for none (see :func:`instance_name`)."""
    loc, home = place.location_id, place.home_location_id
    return b"%s %d %d" % (
        instance.encode(),
        -1 if loc is None else loc,
        -1 if home is None else home,
    )


def parse_presence(value: object) -> Presence:
    """Read a presence value (a missing key, None, is the caller's to handle)."""
    if not isinstance(value, bytes):
        raise ClusterMessageError(NOT_BYTES, f"presence is {type(value).__name__}")
    match = _PRESENCE.fullmatch(value)
    if match is None:
        raise ClusterMessageError(BAD_PRESENCE, f"presence {value[:80]!r}")
    instance, loc, home = match.groups()
    return Presence(
        _utf8(instance, "presence instance"),
        Place(_location(int(loc), "presence"), _location(int(home), "presence")),
    )


# ---- helpers --------------------------------------------------------------------------


def _decimal(digits: bytes) -> int | None:
    """A non-negative integer written the way ``%d`` writes it, else None."""
    if not digits.isdigit() or (digits.startswith(b"0") and digits != b"0"):
        return None  # bytes.isdigit() is ASCII only
    return int(digits)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _location(value: object, where: str) -> int | None:
    """A location id as JSON or presence carries it: an integer, or null; negative: none."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClusterMessageError(BAD_FIELD, f"location {value!r:.40} in {where}")
    return None if value < 0 else value


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ClusterMessageError(NOT_UTF8, f"{what} is not UTF-8: {exc.reason}") from None


def _sendable(text: str, what: str) -> str:
    """``text`` as it is, unless it holds a lone surrogate (a JSON ``\\ud800``), which no
    WebSocket could send on."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ClusterMessageError(NOT_UTF8, f"{what} {text!r:.40} is not valid Unicode") from None
    return text


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ClusterMessageError(NOT_JSON, f"{what} is not JSON: {exc}"[:200]) from None
    if not isinstance(body, dict):
        raise ClusterMessageError(NOT_JSON, f"{what} is a JSON {type(body).__name__}")
    return body


def _instance_message(data: object, what: str) -> tuple[dict[str, Any], str]:
    """The JSON object of a demand or recheck message, and the instance it names."""
    if not isinstance(data, bytes):
        raise ClusterMessageError(NOT_BYTES, f"message is {type(data).__name__}")
    body = _json_object(_utf8(data, what), what)
    return body, _instance(body)


def _instance(body: dict[str, Any]) -> str:
    instance = body.get("i")
    if not isinstance(instance, str) or not instance:
        raise ClusterMessageError(BAD_FIELD, f"instance 'i' is {instance!r:.40}")
    return _sendable(instance, "instance")
