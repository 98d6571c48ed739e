"""The agent's protocol session (klasblik.protocol.session) on strings only: no sockets."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from klasblik import protocol as p
from klasblik.protocol.session import FORBIDDEN_WAIT_S, MAX_REASON_CHARS


def jpeg_of(width: int, height: int) -> bytes:
    """Enough of a JPEG for the frame checks: start of image, a frame header of this size."""
    sof = b"\xff\xc0\x00\x11\x08" + height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return b"\xff\xd8" + sof + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01" + b"\x00" * 40


JPEG = jpeg_of(8, 8)
DEVICE = p.Device("dev-1", "desktop", "Linux-6.1", "klasblik-agent/0.1.0")

WELCOME: dict[str, Any] = {
    "type": "welcome",
    "protocol": 1,
    "session": "c0a8",
    "display_name": "Anna B.",
    "heartbeat_s": 20,
    "max_frame_bytes": 1024 * 1024,
}


def text(msg: dict[str, Any], **fields: Any) -> str:
    return json.dumps({**msg, **fields})


def watch(mode: str = "grid", **fields: Any) -> str:
    msg = {
        "type": "watch",
        "mode": mode,
        "width": 400,
        "height": 225,
        "interval_ms": 2000,
        "quality": 55,
        "encoding": "jpeg",
        "tabs": "none",
        "viewers": ["M. de Vries"],
    }
    return text(msg, **fields)


def quiet_backoff() -> p.Backoff:
    """A backoff without jitter, so each delay is its base."""
    return p.Backoff(jitter=0.0, rng=random.Random(0))


def connected(backoff: p.Backoff | None = None) -> p.AgentSession:
    """A session that said hello on a new connection."""
    session = p.AgentSession(backoff if backoff is not None else quiet_backoff())
    session.hello("tok", "anna@school.example", DEVICE)
    return session


def welcomed(backoff: p.Backoff | None = None, **welcome: Any) -> p.AgentSession:
    """A session that said hello and got a welcome."""
    session = connected(backoff)
    session.receive(text(WELCOME, **welcome))
    return session


def refused(session: p.AgentSession, data: str | bytes, code: str) -> p.ProtocolError:
    """``data`` must raise ProtocolError with ``code`` and leave the session as it was."""
    before = (session.state, session.welcome, session.watch, session.watch_generation)
    with pytest.raises(p.ProtocolError) as info:
        session.receive(data)
    assert info.value.code == code, info.value
    assert (session.state, session.welcome, session.watch, session.watch_generation) == before
    return info.value


# ---------------------------------------------------------------------------- hello


def test_hello_is_a_valid_first_message() -> None:
    """hello carries protocol 1, the token, the account and the device, and passes the agent schema."""
    session = p.AgentSession()
    states = [session.state]
    msg = p.decode_message(session.hello("tok", "anna@school.example", DEVICE), "agent")
    states.append(session.state)
    assert msg == {
        "type": "hello",
        "protocol": p.PROTOCOL_VERSION,
        "token": "tok",
        "account": "anna@school.example",
        "device": {
            "id": "dev-1",
            "kind": "desktop",
            "os": "Linux-6.1",
            "agent": "klasblik-agent/0.1.0",
        },
    }
    assert states == [p.SessionState.CLOSED, p.SessionState.AUTHENTICATING]
    assert not session.welcomed


def test_hello_with_identity_and_key_then_challenge_and_proof() -> None:
    """An identity and a device key go into hello; one challenge before the welcome is
    reported, answered once with proof; a second challenge, one after the welcome, and a
    proof for another nonce are refused."""
    session = p.AgentSession()
    device = p.Device("dev-1", "desktop", key="KEY")
    hello = p.decode_message(
        session.hello("tok", "anna@school.example", device, p.Identity("m365", "a.b.c")),
        "agent",
    )
    assert hello["device"]["key"] == "KEY"
    assert hello["identity"] == {"kind": "m365", "token": "a.b.c"}
    event = session.receive(text({"type": "challenge", "nonce": "n1"}))
    assert event == p.ChallengeReceived("n1")
    refused(session, text({"type": "challenge", "nonce": "n2"}), "unexpected")
    with pytest.raises(p.ProtocolError):
        session.proof("other", "sig")
    proof = p.decode_message(session.proof("n1", "sig"), "agent")
    assert proof == {"type": "proof", "nonce": "n1", "signature": "sig"}
    with pytest.raises(p.ProtocolError):
        session.proof("n1", "sig")  # answered once
    session.receive(text(WELCOME))
    refused(session, text({"type": "challenge", "nonce": "n3"}), "unexpected")


def test_hello_leaves_out_unknown_device_fields_and_cuts_long_ones() -> None:
    """os and agent are left out when unknown and cut to 128 characters when long."""
    bare = p.decode_message(p.AgentSession().hello("t", "a@b", p.Device("d")), "agent")
    assert bare["device"] == {"id": "d", "kind": "desktop"}
    long = p.decode_message(
        p.AgentSession().hello("t", "a@b", p.Device("d", os="x" * 300)), "agent"
    )
    assert long["device"]["os"] == "x" * 128


def test_hello_refuses_a_device_id_the_server_would_refuse() -> None:
    """A device id outside 1-128 characters never goes out: invalid_format before sending."""
    session = p.AgentSession()
    with pytest.raises(p.ProtocolError) as info:
        session.hello("t", "a@b", p.Device("x" * 129))
    assert info.value.code == p.ErrorCode.INVALID_FORMAT
    assert session.state is p.SessionState.CLOSED


def test_second_hello_on_one_connection_is_refused() -> None:
    """hello twice without a close in between is unexpected."""
    session = connected()
    with pytest.raises(p.ProtocolError) as info:
        session.hello("tok", "anna@school.example", DEVICE)
    assert info.value.code == p.ErrorCode.UNEXPECTED
    assert session.state is p.SessionState.AUTHENTICATING


# ---------------------------------------------------------------------------- welcome


def test_welcome_is_recorded() -> None:
    """welcome opens the session and records session id, display name, heartbeat and frame limit."""
    session = connected()
    event = session.receive(text(WELCOME, heartbeat_s=7, max_frame_bytes=5000))
    assert event == p.WelcomeReceived(p.Welcome("c0a8", "Anna B.", 7.0, 5000))
    assert session.state is p.SessionState.OPEN and session.welcomed
    assert session.welcome == event.welcome
    assert (session.heartbeat_s, session.max_frame_bytes) == (7.0, 5000)


def test_welcome_heartbeat_is_at_least_one_second() -> None:
    """A heartbeat_s of 0 or less becomes one second: the agent never floods the server."""
    assert welcomed(heartbeat_s=0).heartbeat_s == 1.0
    assert welcomed(heartbeat_s=-30).heartbeat_s == 1.0


def test_welcome_extra_fields_are_ignored() -> None:
    """A newer server's extra welcome fields do not stop the agent."""
    session = connected()
    session.receive(text(WELCOME, region="eu", features=["x"]))
    assert session.welcomed


def test_welcome_before_hello_is_refused() -> None:
    """A welcome when this agent has said no hello is unexpected and opens nothing."""
    session = p.AgentSession()
    refused(session, text(WELCOME), p.ErrorCode.UNEXPECTED)
    assert session.state is p.SessionState.CLOSED and session.welcome is None


def test_second_welcome_is_refused() -> None:
    """A second welcome is unexpected and does not replace the first one's values."""
    session = welcomed(heartbeat_s=20)
    refused(session, text(WELCOME, session="other", heartbeat_s=1), p.ErrorCode.UNEXPECTED)
    assert session.welcome is not None and session.welcome.session == "c0a8"
    assert session.heartbeat_s == 20.0


def test_welcome_of_another_protocol_version_is_refused() -> None:
    """A welcome that speaks another protocol version is unsupported_version; no session opens."""
    session = connected()
    refused(session, text(WELCOME, protocol=2), p.ErrorCode.UNSUPPORTED_VERSION)
    assert session.state is p.SessionState.AUTHENTICATING


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"heartbeat_s": "20"}, p.ErrorCode.INVALID_FORMAT),
        ({"heartbeat_s": True}, p.ErrorCode.INVALID_FORMAT),
        ({"max_frame_bytes": 1.5}, p.ErrorCode.INVALID_FORMAT),
        ({"session": None}, p.ErrorCode.INVALID_FORMAT),
        ({"protocol": "1"}, p.ErrorCode.INVALID_FORMAT),
    ],
)
def test_malformed_welcome_is_refused(fields: dict[str, Any], code: str) -> None:
    """A welcome with a field of the wrong kind is invalid_format and opens nothing."""
    session = connected()
    refused(session, text(WELCOME, **fields), code)
    assert not session.welcomed


def test_welcome_without_a_field_is_refused() -> None:
    """A welcome missing max_frame_bytes is invalid_format."""
    session = connected()
    msg = {k: v for k, v in WELCOME.items() if k != "max_frame_bytes"}
    error = refused(session, json.dumps(msg), p.ErrorCode.INVALID_FORMAT)
    assert "max_frame_bytes" in error.message


# ---------------------------------------------------------------------------- watch


def test_watch_before_welcome_is_refused() -> None:
    """A watch after hello but before welcome is not_authenticated: nothing is captured."""
    session = connected()
    refused(session, watch("focus"), p.ErrorCode.NOT_AUTHENTICATED)
    assert session.watch == p.WATCH_OFF and not session.capturing


def test_watch_before_hello_is_refused() -> None:
    """A watch on a session that said no hello is not_authenticated."""
    refused(p.AgentSession(), watch("grid"), p.ErrorCode.NOT_AUTHENTICATED)


def test_watch_is_recorded() -> None:
    """Every field of a watch is recorded in a frozen Watch, with the one before it."""
    session = welcomed()
    event = session.receive(
        watch(
            "focus",
            width=1280,
            height=720,
            interval_ms=500,
            quality=70,
            encoding="webp",
            tabs="all",
            viewers=["M. de Vries", "J. Jansen"],
        )
    )
    expected = p.Watch("focus", 1280, 720, 500, 70, "webp", "all", ("M. de Vries", "J. Jansen"))
    assert event == p.WatchReceived(expected, p.WATCH_OFF, 1)
    assert event.changed and session.watch == expected and session.capturing
    with pytest.raises(AttributeError):
        expected.mode = "off"  # type: ignore[misc]


def test_watch_values_are_kept_in_range() -> None:
    """Sizes under 1, a negative interval and a quality outside 1-100 are brought into range."""
    session = welcomed()
    session.receive(watch("grid", width=0, height=-5, interval_ms=-1, quality=900))
    assert (session.watch.width, session.watch.height) == (1, 1)
    assert (session.watch.interval_ms, session.watch.quality) == (0, 100)
    session.receive(watch("grid", quality=0))
    assert session.watch.quality == 1


def test_each_watch_counts_even_when_unchanged() -> None:
    """The same watch again is not a change, but it is a new request (a new generation)."""
    session = welcomed()
    first = session.receive(watch("grid"))
    again = session.receive(watch("grid"))
    assert isinstance(first, p.WatchReceived) and isinstance(again, p.WatchReceived)
    assert first.changed and not again.changed
    assert (first.generation, again.generation) == (1, 2)


def test_watch_off_stops_capturing() -> None:
    """After a watch with mode off the session wants no frames and no tabs."""
    session = welcomed()
    session.receive(watch("grid", tabs="active"))
    assert (session.capturing, session.wants_tabs) == (True, True)
    session.receive(watch("off", viewers=[]))
    assert (session.capturing, session.wants_tabs) == (False, False)


@pytest.mark.parametrize(
    "fields",
    [
        {"mode": "spy"},
        {"tabs": "history"},
        {"encoding": "png"},
        {"viewers": "M. de Vries"},
        {"viewers": [1, 2]},
        {"width": "400"},
        {"interval_ms": None},
    ],
)
def test_malformed_watch_changes_nothing(fields: dict[str, Any]) -> None:
    """A watch with a value outside the allowed ones is invalid_format; the last watch stays."""
    session = welcomed()
    session.receive(watch("off", viewers=[]))
    refused(session, watch(**{"mode": "grid", **fields}), p.ErrorCode.INVALID_FORMAT)
    assert not session.capturing


# ---------------------------------------------------------------------------- errors and attacks


def test_server_error_is_reported_before_welcome() -> None:
    """An error before welcome (a refusal) is reported with its code and message, and kept."""
    session = connected()
    event = session.receive(
        json.dumps({"type": "error", "error": {"code": "unknown_account", "message": "not here"}})
    )
    assert event == p.ErrorReceived("unknown_account", "not here")
    assert session.server_error == event and not session.welcomed


def test_server_error_without_code_or_message_is_still_reported() -> None:
    """An error object without code or message is reported as '?' with an empty message."""
    session = welcomed()
    assert session.receive('{"type":"error","error":{}}') == p.ErrorReceived("?", "")
    assert session.receive('{"type":"error","error":{"code":5}}') == p.ErrorReceived("5", "")


def test_server_error_before_hello_is_refused() -> None:
    """An error on a session that said no hello is unexpected."""
    refused(p.AgentSession(), '{"type":"error","error":{"code":"x"}}', p.ErrorCode.UNEXPECTED)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("", p.ErrorCode.INVALID_JSON),
        ("{", p.ErrorCode.INVALID_JSON),
        ("not json at all", p.ErrorCode.INVALID_JSON),
        ("[1, 2]", p.ErrorCode.INVALID_JSON),
        ('"welcome"', p.ErrorCode.INVALID_JSON),
        ("null", p.ErrorCode.INVALID_JSON),
        ("{}", p.ErrorCode.INVALID_FORMAT),
        ('{"type": 7}', p.ErrorCode.INVALID_FORMAT),
        ('{"type": "error"}', p.ErrorCode.INVALID_FORMAT),
        ('{"type": "error", "error": "boom"}', p.ErrorCode.INVALID_FORMAT),
    ],
)
def test_malformed_text_is_refused(data: str, code: str) -> None:
    """Text that is not a JSON object with a type and its fields is refused with the right code."""
    refused(welcomed(), data, code)


@pytest.mark.parametrize(
    "kind", ["hello", "heartbeat", "tabs", "result", "subscribe", "frobnicate", "", "WELCOME"]
)
def test_unknown_type_is_refused(kind: str) -> None:
    """A type the server does not send an agent is unknown_type, even one of another direction."""
    refused(welcomed(), json.dumps({"type": kind, "seq": 1, "id": 1}), p.ErrorCode.UNKNOWN_TYPE)


def test_oversized_text_is_refused_before_parsing() -> None:
    """A text message over 256 KiB is message_too_large, even a welcome that is otherwise fine."""
    session = connected()
    padding = "x" * p.MAX_TEXT_BYTES
    refused(session, text(WELCOME, padding=padding), p.ErrorCode.MESSAGE_TOO_LARGE)
    assert not session.welcomed
    # Counted in UTF-8 bytes, not characters: 100 000 three-byte characters are too many.
    refused(session, text(WELCOME, padding="€" * 100_000), p.ErrorCode.MESSAGE_TOO_LARGE)


def test_deeply_nested_json_is_refused_not_crashed() -> None:
    """JSON nested deeper than the parser allows is refused as a protocol error."""
    session = welcomed()
    nested = '{"type":"error","error":' + "[" * 100_000 + "]" * 100_000 + "}"
    refused(session, nested, p.ErrorCode.MESSAGE_TOO_DEEP)


def test_binary_message_is_refused() -> None:
    """The server sends an agent no binary messages: unknown_type, even bytes that hold JSON."""
    refused(welcomed(), text(WELCOME).encode(), p.ErrorCode.UNKNOWN_TYPE)


def test_refused_messages_leave_the_session_working() -> None:
    """After a string of bad messages a good watch is still taken."""
    session = welcomed()
    for bad in ("{", "[]", '{"type":"welcome"}', watch("x")):
        with pytest.raises(p.ProtocolError):
            session.receive(bad)
    event = session.receive(watch("grid"))
    assert isinstance(event, p.WatchReceived) and event.generation == 1


# ---------------------------------------------------------------------------- what goes out


def test_no_heartbeat_frame_tabs_or_capture_error_before_welcome() -> None:
    """Before welcome nothing but hello goes out: heartbeat, frame, tabs and capture_error refuse."""
    session = connected()
    for send in (
        session.heartbeat,
        lambda: session.frame(p.Encoding.JPEG, 4, 3, jpeg_of(4, 3), 0),
        lambda: session.tabs_for_title("Word"),
        lambda: session.capture_error("no display"),
    ):
        with pytest.raises(p.ProtocolError) as info:
            send()
        assert info.value.code == p.ErrorCode.NOT_AUTHENTICATED


def test_heartbeats_count_up_across_connections() -> None:
    """Heartbeat seq runs 1, 2, 3 and goes on after a reconnect."""
    session = welcomed()
    seqs = [p.decode_message(session.heartbeat(), "agent")["seq"] for _ in range(3)]
    assert seqs == [1, 2, 3]
    session.connection_closed(1001)
    session.hello("tok", "anna@school.example", DEVICE)
    session.receive(text(WELCOME))
    assert p.decode_message(session.heartbeat(), "agent") == {"type": "heartbeat", "seq": 4}


def test_frames_follow_the_mode_and_count_up() -> None:
    """A frame decodes, says grid or focus as the watch does, and its seq counts up across connections."""
    session = welcomed()
    session.receive(watch("grid"))
    first = session.frame(p.Encoding.JPEG, 400, 225, jpeg_of(400, 225), 1_700_000_000_000)
    header = p.decode_frame(first)
    assert header == p.FrameHeader(
        p.FrameKind.GRID, p.Encoding.JPEG, 400, 225, 1, 1_700_000_000_000
    )
    assert first[p.FRAME_HEADER_SIZE :] == jpeg_of(400, 225)
    session.receive(watch("focus"))
    assert p.decode_frame(session.frame(p.Encoding.JPEG, 8, 8, JPEG, 1)).kind == p.FrameKind.FOCUS
    session.connection_closed(1006)
    session.hello("tok", "anna@school.example", DEVICE)
    session.receive(text(WELCOME))
    session.receive(watch("grid"))
    assert p.decode_frame(session.frame(p.Encoding.JPEG, 8, 8, JPEG, 2)).seq == 3


def test_frame_seq_wraps_at_32_bits() -> None:
    """The frame counter wraps at 2**32 instead of overflowing the header."""
    session = welcomed()
    session.receive(watch("grid"))
    session.frame_seq = 0xFFFFFFFE
    seqs = [p.decode_frame(session.frame(p.Encoding.JPEG, 8, 8, JPEG, 0)).seq for _ in range(2)]
    assert seqs == [0xFFFFFFFF, 0] and session.frame_seq == 0


def test_no_frames_while_off() -> None:
    """With mode off (before any watch, or after one) no frame is built."""
    session = welcomed()
    for _ in range(2):
        with pytest.raises(p.ProtocolError) as info:
            session.frame(p.Encoding.JPEG, 8, 8, JPEG, 0)
        assert info.value.code == p.ErrorCode.UNEXPECTED
        session.receive(watch("off", viewers=[]))
    assert session.frame_seq == 0


def test_frame_over_the_servers_limit_is_not_built() -> None:
    """A frame over welcome's max_frame_bytes is frame_too_large (its seq is used up); one at the limit goes."""
    limit = p.FRAME_HEADER_SIZE + len(JPEG)
    session = welcomed(max_frame_bytes=limit)
    session.receive(watch("grid"))
    with pytest.raises(p.ProtocolError) as info:
        session.frame(p.Encoding.JPEG, 8, 8, JPEG + b"\x00", 0)
    assert info.value.code == p.ErrorCode.FRAME_TOO_LARGE
    assert f"limit of {limit}" in info.value.message
    assert len(session.frame(p.Encoding.JPEG, 8, 8, JPEG, 0)) == limit
    assert session.frame_seq == 2


def test_window_title_goes_out_once_per_change_and_watch() -> None:
    """With tabs asked for, a title goes out as one tab when it changed, and again after each watch."""
    session = welcomed()
    session.receive(watch("grid", tabs="none"))
    assert session.tabs_for_title("Word") is None
    session.receive(watch("grid", tabs="active"))
    sent = session.tabs_for_title("Word")
    assert sent is not None and p.decode_message(sent, "agent") == {
        "type": "tabs",
        "tabs": [{"title": "Word", "url": "", "active": True, "window": 1}],
    }
    assert session.tabs_for_title("Word") is None
    assert session.tabs_for_title("Rekenen") is not None
    session.receive(watch("grid", tabs="active"))  # the same request again: sent afresh
    assert session.tabs_for_title("Rekenen") is not None
    session.receive(watch("off", tabs="active", viewers=[]))
    assert session.tabs_for_title("Anything") is None


def test_long_title_and_reason_are_cut() -> None:
    """A window title is cut to 512 characters and a capture_error reason to 512 too."""
    session = welcomed()
    session.receive(watch("grid", tabs="active"))
    sent = session.tabs_for_title("T" * 5000)
    assert sent is not None
    assert p.decode_message(sent, "agent")["tabs"][0]["title"] == "T" * p.MAX_TITLE_CHARS
    error = p.decode_message(session.capture_error("R" * 5000), "agent")
    assert error == {"type": "capture_error", "reason": "R" * MAX_REASON_CHARS, "code": "other"}


# ---------------------------------------------------------------------------- closing and reconnecting


def test_backoff_doubles_between_failed_attempts() -> None:
    """Attempts that never connect wait 1, 2, 4, 8 s (no jitter here), then at most 60 s."""
    session = p.AgentSession(quiet_backoff())
    delays = []
    for _ in range(8):
        session.connection_failed()
        delays.append(session.reconnect())
    assert [d.delay_s for d in delays] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert not any(d.forbidden for d in delays)


def test_staff_refusal_waits_at_least_an_hour() -> None:
    """After error not_a_student and close 4003 the wait is an hour or more, whatever the jitter."""
    for seed in range(50):
        session = connected(p.Backoff(rng=random.Random(seed)))
        session.receive('{"type":"error","error":{"code":"not_a_student","message":"staff"}}')
        closed = session.connection_closed(p.CloseCode.FORBIDDEN)
        assert closed.code == 4003 and closed.error == p.ErrorReceived("not_a_student", "staff")
        wait = session.reconnect()
        assert wait.forbidden and FORBIDDEN_WAIT_S <= wait.delay_s <= 1.5 * FORBIDDEN_WAIT_S


def test_welcomed_connection_starts_the_backoff_again() -> None:
    """A connection that got a welcome resets the backoff: the next wait is the shortest."""
    backoff = quiet_backoff()
    backoff.attempts = 5
    session = welcomed(backoff)
    closed = session.connection_closed(p.CloseCode.GOING_AWAY)
    assert closed.welcomed and closed.backoff_reset and not closed.replaced
    assert session.reconnect().delay_s == 1.0 and backoff.attempts == 1


def test_refused_connection_keeps_backing_off() -> None:
    """A connection closed before welcome (4001 after an error) does not reset the backoff."""
    backoff = quiet_backoff()
    backoff.attempts = 3
    session = connected(backoff)
    session.receive('{"type":"error","error":{"code":"auth_failed","message":"no"}}')
    closed = session.connection_closed(p.CloseCode.AUTH_FAILED)
    assert not closed.welcomed and not closed.backoff_reset
    assert session.reconnect() == p.Reconnect(8.0, forbidden=False)


def test_replaced_connection_keeps_backing_off() -> None:
    """After close 4009 (replaced) the backoff is not reset, even after a welcome."""
    backoff = quiet_backoff()
    backoff.attempts = 2
    session = welcomed(backoff)
    closed = session.connection_closed(p.CloseCode.REPLACED)
    assert closed.replaced and closed.welcomed and not closed.backoff_reset
    assert session.reconnect().delay_s == 4.0


def test_failure_after_welcome_keeps_backing_off() -> None:
    """A connection that ends in a fault of the agent's (no close code) does not reset the backoff."""
    backoff = quiet_backoff()
    backoff.attempts = 2
    session = welcomed(backoff)
    closed = session.connection_failed()
    assert closed.code is None and closed.welcomed and not closed.backoff_reset
    assert session.reconnect().delay_s == 4.0


@pytest.mark.parametrize("code", [None, 0, -1, 999, 5000, 99_999, 4003.0, "4003", True])
def test_bad_close_code_is_an_ordinary_backoff(code: Any) -> None:
    """A close code no WebSocket can report is treated as none: ordinary backoff, never the hour."""
    session = connected()
    closed = session.connection_closed(code)
    assert closed.code is None
    wait = session.reconnect()
    assert wait == p.Reconnect(1.0, forbidden=False)


def test_abnormal_close_after_welcome_resets_and_backs_off() -> None:
    """1006 (the network went away) after a welcome is an ordinary close: reset, then 1 s."""
    backoff = quiet_backoff()
    backoff.attempts = 4
    session = welcomed(backoff)
    assert session.connection_closed(1006).code == 1006
    assert session.reconnect() == p.Reconnect(1.0, forbidden=False)


def test_forbidden_wait_holds_only_for_the_last_close() -> None:
    """After the hour-long wait, a later ordinary failure backs off normally again."""
    session = connected()
    session.connection_closed(p.CloseCode.FORBIDDEN)
    assert session.reconnect().forbidden
    session.connection_failed()
    assert not session.reconnect().forbidden


def test_reconnect_while_open_is_refused() -> None:
    """The wait before reconnecting is only asked once the connection has closed."""
    with pytest.raises(p.ProtocolError) as info:
        welcomed().reconnect()
    assert info.value.code == p.ErrorCode.UNEXPECTED


def test_a_new_connection_forgets_the_old_one() -> None:
    """After a close, what the server said is forgotten: no watch in force, welcome needed again."""
    session = welcomed()
    session.receive(watch("focus", tabs="all"))
    session.receive('{"type":"error","error":{"code":"too_slow","message":"m"}}')
    session.connection_closed(1001)
    assert session.state is p.SessionState.CLOSED and not session.capturing
    refused(session, watch("grid"), p.ErrorCode.NOT_AUTHENTICATED)
    refused(session, text(WELCOME), p.ErrorCode.UNEXPECTED)
    session.hello("tok", "anna@school.example", DEVICE)
    assert session.welcome is None and session.watch == p.WATCH_OFF
    assert session.server_error is None and session.watch_generation == 0
    refused(session, watch("grid"), p.ErrorCode.NOT_AUTHENTICATED)
