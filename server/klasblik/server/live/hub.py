"""The hub: owns every agent and dashboard connection of this process and routes between them.

Demand drives everything: an agent is told to send frames only while at least one viewer
watches its student, at the rate of the most demanding viewer (focus over grid), and to go
quiet when the last viewer leaves. Frames go to viewers as the bytes the agent sent, behind
a small prefix built once per frame; each viewer has its own bounded outbox, so a slow
viewer is cut off instead of delaying anyone else.

Authorisation happens before the hub is asked (see ``access.py``); the hub trusts its
callers and only keeps the bookkeeping. The one rule it applies itself, to every
viewer-device pair on every frame, is ``gate`` (see ``locations.py``): a pair it refuses
gets no frames or tabs, does not count as demand, and the tile says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import json
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.live.outbox import Outbox
from klasblik.server.locations.rule import Placed
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name, thumbnail_place_name
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.tasks import TaskOwner

if TYPE_CHECKING:
    from klasblik.server.live.cluster.link import Cluster

__all__ = ["AgentConn", "Hub", "Placed", "Viewer", "strip_query"]

log = logging.getLogger(__name__)

_MODE_RANK = {"off": 0, "grid": 1, "focus": 2}
#: identity levels, best first in the protocol: a higher rank is never replaced by a lower
_RANK = {level: -i for i, level in enumerate(p.IDENTITY_LEVELS)}


def strip_query(url: str) -> str:
    """The address without its query string and fragment (search terms, tokens)."""
    return url.split("#", 1)[0].split("?", 1)[0]


@functools.lru_cache(maxsize=1024)
def _place_blob(location_id: int | None) -> bytes:
    """The stored note of where a thumbnail was taken."""
    return json.dumps({"location_id": location_id}, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=1 << 16)
def _stored_as(student_id: int, location_id: int | None) -> tuple[str, tuple[str, bytes]]:
    """The name of a student's stored thumbnail, and the note written beside it of where
    it was taken (made once per student and place: every whole grid picture needs them)."""
    return thumbnail_name(student_id), (
        thumbnail_place_name(student_id),
        _place_blob(location_id),
    )


def _iso(ts: dt.datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


@dataclass(eq=False, slots=True, weakref_slot=True)
class AgentConn:
    """One connected agent, after a successful hello."""

    student_id: int
    display_name: str
    ws: web.WebSocketResponse
    outbox: Outbox
    ip: str
    device_kind: str
    #: the location the device is at now (from its address), None when off-site
    location_id: int | None = None
    #: the student's home location (roster)
    home_location_id: int | None = None
    connected_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: when the agent was last heard from (``time.monotonic``: every message sets it)
    heard: float = field(default_factory=time.monotonic)
    capture_error: str | None = None
    #: its code (``p.CAPTURE_CODES``), for the teacher's words
    capture_code: str = "other"
    tabs: list[dict[str, Any]] = field(default_factory=list)
    watch: dict[str, Any] | None = None
    frames_in: int = 0
    #: the device reports a page on the private list: nothing is captured or shown
    private_page: bool = False
    #: the hello's device id
    device_id: str = ""
    #: "full", or "tabs": a browser extension beside a desktop agent on the same device
    role: str = "full"
    #: how well the agent proved who it is: verified, device or unverified
    identity: str = "unverified"
    #: kept aside: it claimed a student whose connection is better proven (never relayed)
    sidelined: bool = False
    #: the agent sends delta frames (its hello and our welcome said ``tiles``)
    tiles: bool = False
    #: (kind, width, height) of its last key frame taken; None: deltas are refused
    key_base: tuple[int, int, int] | None = None
    #: raised to ask the agent for a key frame (``watch.key``); pending until one comes
    key: int = 0
    key_pending: bool = False

    @property
    def mode(self) -> str:
        return self.watch["mode"] if self.watch else "off"

    @property
    def last_seen(self) -> dt.datetime:
        """When the agent was last heard from, as a time of day (UTC)."""
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=time.monotonic() - self.heard)


@dataclass(eq=False, slots=True, weakref_slot=True)
class Viewer:
    """One dashboard connection of a signed-in staff member."""

    staff_id: int
    staff_name: str
    ws: web.WebSocketResponse
    outbox: Outbox
    ip: str
    #: the location the teacher is at now (from the address), None when off-site
    location_id: int | None = None
    #: the teacher's home location (roster)
    home_location_id: int | None = None
    id: int = field(default_factory=itertools.count(1).__next__)
    #: the sign-in (``WebSession.id``) this dashboard belongs to; its end closes the socket
    session_id: str = ""
    #: class id -> the student ids of that class this viewer may see
    classes: dict[int, set[int]] = field(default_factory=dict)
    focus: set[int] = field(default_factory=set)
    last_sent: dict[int, float] = field(default_factory=dict)
    #: students whose key frame this viewer has, with every delta since: deltas may follow
    keyed: set[int] = field(default_factory=set)
    #: students whose deltas this viewer gets: their key frames are never held back
    tiled: set[int] = field(default_factory=set)
    #: the TCP connection, aborted when a closing handshake cannot be written
    transport: asyncio.BaseTransport | None = None

    def mode_for(self, student_id: int) -> str:
        if student_id in self.focus:
            return "focus"
        if any(student_id in ids for ids in self.classes.values()):
            return "grid"
        return "off"

    def watched(self) -> set[int]:
        out: set[int] = set(self.focus)
        for ids in self.classes.values():
            out |= ids
        return out


def _unsent(viewer: Viewer) -> bool:
    transport = viewer.transport
    size = getattr(transport, "get_write_buffer_size", None)
    return bool(size is not None and size() > 0)


def abort_connection(viewer: Viewer) -> None:
    """Drop the viewer's TCP connection at once, with a reset: a peer that does not read
    would otherwise keep the socket, and what is buffered for it, for as long as it likes.
    (Closing a socket with unsent data makes the kernel keep trying to send it; a zero
    linger time makes it send a reset and free the buffer instead.)"""
    transport = viewer.transport
    if transport is not None:  # a closing transport too: its close waits for the buffer
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        abort = getattr(transport, "abort", None)
        if abort is not None:
            abort()
        else:
            transport.close()


class Hub:
    """In-process routing of frames, tabs, status and watch commands."""

    def __init__(self, settings: Settings, latest: LatestWriter) -> None:
        self.settings = settings
        self.latest = latest
        self.agents: dict[int, AgentConn] = {}
        #: student id -> connections kept aside: they claim a student whose connection
        #: here is better proven (see ``attach_agent``)
        self.contested: dict[int, set[AgentConn]] = {}
        self.viewers: set[Viewer] = set()
        #: student id -> viewer -> mode ("grid" or "focus")
        self.watchers: dict[int, dict[Viewer, str]] = {}
        self.frames_relayed = 0
        #: for /metrics: validated frames from agents here, frames a viewer's full outbox
        #: refused, and viewers cut off for falling behind
        self.frames_received = 0
        self.frames_dropped = 0
        self.viewers_cut_off = 0
        #: when each student that went offline in this process was last seen
        self._offline_seen: dict[int, dt.datetime] = {}
        self._grid_gap = settings.grid_interval_ms / 1000 * 0.9
        #: set by relay_frame: a viewer missed a frame of a delta stream
        self._want_key = False
        #: None when this viewer may see this device now, else why not (a protocol code);
        #: either may be on another instance, so the rule reads only where each is
        self.gate: Callable[[Placed, Placed], str | None] | None = None
        #: routing between instances (``live/cluster``); None: this process only
        self.cluster: Cluster | None = None
        #: short-lived tasks: closing a replaced agent, a silent one, a slow viewer
        self.tasks = TaskOwner("hub")
        #: students on the do-not-view list whose agent is here (``access/no_view.py``)
        self.no_view: set[int] = set()
        #: student id -> the tabs-only connection (role "tabs") beside its desktop agent
        self.companions: dict[int, AgentConn] = {}
        #: agent connections attached since start (``collector.py`` watches its bursts)
        self.connects = 0

    def blocked(self, viewer: Placed, conn: Placed | None) -> str | None:
        """None when ``viewer`` may see ``conn`` now, else why not. Fails closed: with no
        location rule installed, nothing is shown."""
        if conn is None:
            return None
        if getattr(conn, "student_id", None) in self.no_view:
            return p.ErrorCode.NO_VIEW
        if self.gate is None:
            return p.ErrorCode.ELSEWHERE
        return self.gate(viewer, conn)

    def blocked_student(self, viewer: Placed, student_id: int) -> str | None:
        """:meth:`blocked` for a student's device wherever it is held: here, or by another
        instance (at the place that instance last said). None when no device is known
        (offline): the stored picture's own endpoint then decides by the place kept
        beside it (web/api.py)."""
        conn = self.agents.get(student_id)
        if conn is not None:
            return self.blocked(viewer, conn)
        cluster = self.cluster
        if cluster is not None and cluster.remote_status(student_id) is not None:
            return self.blocked(viewer, cluster.remote_device(student_id))
        return None

    # ---- agents -------------------------------------------------------------------

    def attach_agent(self, conn: AgentConn) -> AgentConn | None:
        """Register an authenticated agent; return the older connection it replaces.

        A connection never replaces a better-proven one (verified > device > unverified),
        its agent's nor, for a companion, the companion's: it is kept aside instead
        (``sidelined``), gets no watch, relays nothing, and the student's status counts it
        under ``contested``.

        A connection with role "tabs" does not replace the student's agent: it joins it as
        its companion (one per student), and its tabs go to the tile while it is on the
        same device as the agent (see :meth:`merged`).
        """
        sid = conn.student_id
        self.connects += 1
        rivals = [self.agents.get(sid)]
        if conn.role == "tabs":
            rivals.append(self.companions.get(sid))
        if any(r is not None and _RANK[conn.identity] < _RANK[r.identity] for r in rivals):
            conn.sidelined = True
            self.contested.setdefault(sid, set()).add(conn)
            self._broadcast_status(sid)
            return None
        if conn.role == "tabs":
            old_companion = self.companions.get(sid)
            self.companions[sid] = conn
            self._refresh(sid)
            self._refresh_companion(sid, force=True)
            return old_companion
        old = self.agents.get(sid)
        self.agents[conn.student_id] = conn
        if self.cluster is not None:
            self.cluster.agent_attached(conn)
        self._refresh(conn.student_id, force=True)
        self._broadcast_status(conn.student_id)
        return old

    def merged(self, student_id: int) -> AgentConn | None:
        """The companion whose tabs the tile shows: same device as the student's agent."""
        companion = self.companions.get(student_id)
        main = self.agents.get(student_id)
        if companion is None or main is None or main.role == "tabs":
            return None
        return companion if companion.device_id == main.device_id else None

    def detach_agent(self, conn: AgentConn) -> None:
        # what is stored is kept for the last state of a device that went offline: what
        # is pending for it is written now, not at the end of its store interval
        if self.companions.get(conn.student_id) is conn:
            del self.companions[conn.student_id]
            self.latest.flush(tabs_name(conn.student_id))
            self._refresh(conn.student_id)  # the agent sends its window title again
            return
        aside = self.contested.get(conn.student_id)
        if aside is not None and conn in aside:
            aside.discard(conn)
            if not aside:
                del self.contested[conn.student_id]
            self._broadcast_status(conn.student_id)
            return
        if self.agents.get(conn.student_id) is conn:
            del self.agents[conn.student_id]
            self.latest.flush(thumbnail_name(conn.student_id), tabs_name(conn.student_id))
            conn.heard = time.monotonic()
            self._offline_seen[conn.student_id] = conn.last_seen
            if self.cluster is not None:
                self.cluster.agent_detached(conn.student_id)
            self._broadcast_status(conn.student_id)

    def status(
        self, student_id: int, last_seen: dt.datetime | None = None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        conn = self.agents.get(student_id)
        state: dict[str, Any]
        why = self.blocked_student(viewer, student_id) if viewer is not None else None
        if conn is not None:
            state = {
                "online": True,
                "last_seen": _iso(conn.last_seen),
                "capture_error": conn.capture_error,
                "elsewhere": why == p.ErrorCode.ELSEWHERE,
                "mode": "off" if why else conn.mode,
                "identity": conn.identity,
            }
            if conn.capture_error is not None:
                state["capture_code"] = conn.capture_code
            if conn.private_page and not why:
                state["private_page"] = True
        else:
            cluster = self.cluster  # held by another instance?
            remote = cluster.remote_status(student_id) if cluster is not None else None
            if cluster is None or remote is None:
                seen = self._offline_seen.get(student_id) or last_seen
                state = {
                    "online": False,
                    "last_seen": _iso(seen),
                    "capture_error": None,
                    "elsewhere": False,
                    "mode": "off",
                }
            else:
                state = dict(remote, elsewhere=why == p.ErrorCode.ELSEWHERE)
                state["mode"] = "off" if why else remote.get("mode", "off")
        if why == p.ErrorCode.OUTSIDE_LESSON_HOURS:
            state["outside_lesson_hours"] = True
        if why == p.ErrorCode.NO_VIEW or (conn is not None and student_id in self.no_view):
            # also in the status published to other instances (no viewer here)
            state["no_view"] = True
            state["mode"] = "off"
            state.pop("private_page", None)
        contested = len(self.contested.get(student_id, ()))
        if contested:
            state["contested"] = contested
        return state

    def set_no_view(self, student_id: int, on: bool) -> None:
        """Put a student on (or off) the do-not-view list here: the agent's watch drops to
        off at once, and every tile says why."""
        if on:
            self.no_view.add(student_id)
        else:
            self.no_view.discard(student_id)
        conn = self.agents.get(student_id)
        if conn is not None and on:
            conn.tabs = []
        self._refresh(student_id)
        self._broadcast_status(student_id)

    def on_private_page(self, conn: AgentConn, on: bool) -> None:
        if conn.private_page != on:
            conn.private_page = on
            self._broadcast_status(conn.student_id)

    def touch(self, conn: AgentConn) -> None:
        conn.heard = time.monotonic()

    def on_frame(self, conn: AgentConn, data: bytes, header: p.FrameHeader) -> int:
        """Relay one validated agent frame; return to how many viewers it was queued."""
        self.frames_received += 1
        if conn.mode == "off" or self.agents.get(conn.student_id) is not conn:
            return 0  # nobody asked for it: never relay or keep a frame nobody watches
        conn.frames_in += 1
        sid = conn.student_id
        if conn.capture_error is not None:  # a new picture: capturing works again
            conn.capture_error = None
            self._broadcast_status(sid)
        if header.key:
            conn.key_pending = False
        sent, allowed = self.relay_frame(sid, data, header.kind, conn)
        if self.cluster is not None and self.cluster.publish_frame(conn, data):
            allowed = True  # a viewer on another instance may see it
        if not allowed:  # the rule changed since the last watch: quieten the agent now
            self._refresh(sid)
            return 0
        if self._want_key:  # a viewer missed a frame of this stream: a whole picture next
            self._want_key = False
            self.request_key(conn)
        # only a whole grid picture is kept, never a close-up or a delta; beside it, where
        # it was taken: a teacher elsewhere never sees it (web/api.py)
        if header.kind == p.FrameKind.GRID and header.key:
            name, beside = _stored_as(sid, conn.location_id)
            self.latest.offer(name, memoryview(data)[p.FRAME_HEADER_SIZE :], beside)
        return sent

    def relay_frame(self, sid: int, data: bytes, kind: int, device: Placed) -> tuple[int, bool]:
        """Queue an agent frame (from an agent here or elsewhere) to this process's viewers
        of ``sid`` that may see ``device``; return (queued, whether any viewer may)."""
        watchers = self.watchers.get(sid)
        if not watchers:
            return 0, False
        payload: bytes | None = None
        now = time.monotonic()
        sent = 0
        allowed = False
        self._want_key = False
        delta = data[6] == p.Encoding.TILES  # the header's encoding byte
        for viewer, mode in watchers.items():
            if self.blocked(viewer, device):
                continue
            allowed = True
            if delta:
                if sid not in viewer.keyed:  # it lacks the picture this delta changes
                    self._want_key = True
                    continue
            elif (
                mode == "grid"
                and kind == p.FrameKind.FOCUS
                and sid not in viewer.tiled
                and now - viewer.last_sent.get(sid, float("-inf")) < self._grid_gap
            ):
                viewer.keyed.discard(sid)
                continue  # a grid tile does not need focus-rate frames
            if payload is None:
                payload = p.viewer_frame_prefix(sid) + data
            viewer.last_sent[sid] = now
            if viewer.outbox.put(payload):
                sent += 1
                if delta:
                    viewer.tiled.add(sid)
                else:
                    viewer.keyed.add(sid)
            else:
                self.frames_dropped += 1
                viewer.keyed.discard(sid)
                self._want_key = True
        self.frames_relayed += sent
        return sent, allowed

    def lost_frame(self, conn: AgentConn) -> None:
        """A frame of ``conn`` was dropped before any viewer had it: its deltas are refused
        until its next key frame, which it is asked for."""
        conn.key_base = None
        conn.key_pending = False  # ask again even if a key frame was asked for: it was lost
        self.request_key(conn)

    def request_key(self, conn: AgentConn) -> None:
        """Ask an agent that sends deltas for a key frame (``watch.key``), once until it
        comes."""
        if not conn.tiles or conn.key_pending:
            return
        conn.key_pending = True
        conn.key += 1
        self._refresh(conn.student_id)

    def relay_text(self, sid: int, text: str, device: Placed) -> bool:
        """Queue a text message (tabs) to this process's viewers of ``sid`` that may see
        ``device``; return whether any may."""
        allowed = [v for v in self.watchers.get(sid, {}) if not self.blocked(v, device)]
        for viewer in allowed:  # only the latest tab list matters: one slot per student
            viewer.outbox.put_latest(("tabs", sid), text)
        return bool(allowed)

    def on_tabs(self, conn: AgentConn, tabs: list[dict[str, Any]]) -> None:
        main = self.agents.get(conn.student_id)
        if conn.role == "tabs":  # a companion: its tabs join its agent's tile
            if main is None or self.merged(conn.student_id) is not conn or main.mode == "off":
                return
        elif conn is not main or conn.mode == "off" or self.merged(conn.student_id):
            return  # merged: the browser's own tabs, not the desktop's window title
        clean = [
            {
                "title": "" if t.get("private") is True else t["title"],
                "url": "" if t.get("private") is True else t.get("url", ""),
                "active": bool(t.get("active", False)),
                "window": int(t.get("window", 0)),
                **({"private": True} if t.get("private") is True else {}),
            }
            for t in tabs
        ]
        conn = main  # the tile's device: the place rule and the cluster see the agent
        conn.tabs = clean
        sid = conn.student_id
        text = p.encode_message({"type": "tabs", "student_id": sid, "tabs": clean})
        allowed = self.relay_text(sid, text, conn)
        if self.cluster is not None and self.cluster.publish_tabs(conn, text):
            allowed = True
        if not allowed:
            self._refresh(sid)
            return
        stored = (
            clean
            if self.settings.store_url_query
            else [dict(t, url=strip_query(str(t["url"]))) for t in clean]
        )
        self.latest.offer(tabs_name(sid), json.dumps(stored, ensure_ascii=False).encode())

    def on_capture_error(self, conn: AgentConn, reason: str, code: str | None = None) -> None:
        conn.capture_error = reason[:300]
        conn.capture_code = code if code in p.CAPTURE_CODES else "other"
        self._broadcast_status(conn.student_id)

    # ---- viewers ------------------------------------------------------------------

    def add_viewer(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)

    def remove_viewer(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        affected = viewer.watched()
        viewer.classes.clear()
        viewer.focus.clear()
        self._update_watchers(viewer, affected)

    def subscribe(self, viewer: Viewer, class_id: int, student_ids: Iterable[int]) -> None:
        ids = set(student_ids)
        before = viewer.classes.get(class_id, set())
        viewer.classes[class_id] = ids
        self._update_watchers(viewer, ids | before)

    def unsubscribe(self, viewer: Viewer, class_id: int) -> None:
        ids = viewer.classes.pop(class_id, set())
        # a focus view only lives inside a subscribed class
        viewer.focus = {s for s in viewer.focus if any(s in c for c in viewer.classes.values())}
        self._update_watchers(viewer, ids)

    def set_focus(self, viewer: Viewer, student_id: int, on: bool) -> None:
        if on:
            viewer.focus.add(student_id)
        else:
            viewer.focus.discard(student_id)
        self._update_watchers(viewer, {student_id})

    def _update_watchers(self, viewer: Viewer, student_ids: Iterable[int]) -> None:
        for sid in student_ids:
            mode = viewer.mode_for(sid) if viewer in self.viewers else "off"
            slot = self.watchers.setdefault(sid, {})
            if slot.get(viewer) != mode:  # a new stream for this viewer: a key frame first
                viewer.keyed.discard(sid)
                viewer.tiled.discard(sid)
                conn = self.agents.get(sid)
                if mode != "off" and conn is not None and conn.tiles:
                    conn.key += 1  # sent with the refresh below
                    conn.key_pending = True
            if mode == "off":
                slot.pop(viewer, None)
                viewer.last_sent.pop(sid, None)
                if not slot:
                    del self.watchers[sid]
            else:
                slot[viewer] = mode
            if self.cluster is not None:
                self.cluster.demand_changed(sid)
            self._refresh(sid)

    def viewers_of(self, student_id: int) -> list[Viewer]:
        return list(self.watchers.get(student_id, {}))

    async def revoke_staff(self, staff_id: int, reason: str) -> int:
        """Close every dashboard of a staff member who lost access; return how many."""
        victims = [v for v in self.viewers if v.staff_id == staff_id]
        for viewer in victims:
            await self.close_viewer(
                viewer, p.ErrorCode.FORBIDDEN, reason, p.CloseCode.ACCESS_REVOKED
            )
        return len(victims)

    async def end_session(self, session_id: str, reason: str) -> int:
        """Close every dashboard of one sign-in that ended (signed out, expired)."""
        victims = [v for v in self.viewers if session_id and v.session_id == session_id]
        for viewer in victims:
            await self.close_viewer(
                viewer, p.ErrorCode.SESSION_ENDED, reason, p.CloseCode.SESSION_ENDED
            )
        return len(victims)

    async def close_viewer(self, viewer: Viewer, code: str, message: str, close_code: int) -> None:
        self.remove_viewer(viewer)
        await viewer.outbox.close()
        closed_cleanly = viewer.ws.closed
        if not viewer.ws.closed:
            try:
                async with asyncio.timeout(1):
                    await viewer.ws.send_str(
                        p.encode_message(
                            {"type": "closed", "error": {"code": code, "message": message}}
                        )
                    )
                async with asyncio.timeout(2):
                    await viewer.ws.close(code=close_code, message=message.encode()[:120])
                closed_cleanly = True
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
            except asyncio.CancelledError:
                # a send given up on part-way (a stalled viewer) can end the next one so
                # too; only a cancellation of this task itself goes on up
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    abort_connection(viewer)
                    raise
        if not closed_cleanly or close_code == p.CloseCode.TOO_SLOW or _unsent(viewer):
            abort_connection(viewer)  # a peer that does not read never sees a FIN

    def viewer_too_slow(self, viewer: Viewer) -> None:
        self.viewers_cut_off += 1
        log.warning(
            "dashboard %s of staff %s fell behind; disconnecting", viewer.id, viewer.staff_id
        )
        self.tasks.spawn(
            self.close_viewer(
                viewer,
                p.ErrorCode.TOO_SLOW,
                "this dashboard could not keep up and was disconnected",
                p.CloseCode.TOO_SLOW,
            ),
            f"close slow viewer {viewer.id}",
        )

    # ---- watch commands ------------------------------------------------------------

    def desired_watch(self, student_id: int) -> dict[str, Any]:
        conn = self.agents.get(student_id)
        watchers = {
            v: m for v, m in self.watchers.get(student_id, {}).items() if not self.blocked(v, conn)
        }
        mode = max(watchers.values(), key=_MODE_RANK.__getitem__, default="off")
        names = {v.staff_name for v in watchers}
        if self.cluster is not None and conn is not None:  # viewers on other instances too
            remote_mode, remote_names = self.cluster.remote_demand(conn)
            mode = max(mode, remote_mode, key=_MODE_RANK.__getitem__)
            names |= remote_names
        if student_id in self.no_view:  # whoever asks, wherever they are
            mode, names = "off", set()
        s = self.settings
        if mode == "focus":
            width, height, interval, quality, tabs = (
                s.focus_width,
                s.focus_height,
                s.focus_interval_ms,
                s.focus_quality,
                "all",
            )
        else:
            width, height, interval, quality, tabs = (
                s.grid_width,
                s.grid_height,
                s.grid_interval_ms,
                s.grid_quality,
                "active" if mode == "grid" else "none",
            )
        return {
            "type": "watch",
            "mode": mode,
            "width": width,
            "height": height,
            "interval_ms": interval,
            "quality": quality,
            "encoding": s.encoding,
            "tabs": tabs,
            "viewers": sorted(names),
        }

    def refresh_watch(self, student_id: int) -> None:
        """Re-send the agent's watch command if the demand for it changed."""
        self._refresh(student_id)

    def broadcast_status(self, student_id: int) -> None:
        """Tell this process's viewers the student's current status."""
        self._broadcast_status(student_id)

    def _refresh_companion(self, student_id: int, force: bool = False) -> None:
        """The companion's watch: its agent's, for the tabs only (it sends no frames);
        off while it is not on the agent's device."""
        companion = self.companions.get(student_id)
        if companion is None:
            return
        if self.merged(student_id) is companion:
            want = self.desired_watch(student_id)
        else:
            want = dict(self.desired_watch(student_id), mode="off", tabs="none", viewers=[])
        if force or want != companion.watch:
            companion.watch = want
            companion.outbox.put(p.encode_message(want, "server_agent"))

    def _refresh(self, student_id: int, force: bool = False) -> None:
        conn = self.agents.get(student_id)
        if conn is None:
            self._refresh_companion(student_id)
            return
        try:
            self._refresh_main(conn, student_id, force)
        finally:
            self._refresh_companion(student_id)

    def _refresh_main(self, conn: AgentConn, student_id: int, force: bool) -> None:
        want = self.desired_watch(student_id)
        if self.merged(student_id) is not None:
            want["tabs"] = "none"  # the companion sends the browser's tabs instead
        if conn.tiles:
            want["key"] = conn.key
        if force or want != conn.watch:
            previous = conn.mode
            conn.watch = want
            conn.outbox.put(p.encode_message(want, "server_agent"))
            if previous != want["mode"]:
                self._broadcast_status(student_id)

    def _broadcast_status(self, student_id: int) -> None:
        if self.cluster is not None and student_id in self.agents:
            self.cluster.publish_status(self.agents[student_id], self.status(student_id))
        watchers = self.watchers.get(student_id)
        if not watchers:
            return
        texts: dict[str, str] = {}  # the same bytes to every viewer with the same answer
        for viewer in watchers:
            state = self.status(student_id, viewer=viewer)
            key = json.dumps(state, sort_keys=True)
            if key not in texts:
                texts[key] = p.encode_message(
                    {"type": "status", "student_id": student_id, "state": state}
                )
            # coalesced: a storm of changes costs one slot per student, never the queue
            viewer.outbox.put_latest(("status", student_id), texts[key])

    def reevaluate(self) -> None:
        """Re-apply ``gate`` to every watched device (the rule's inputs changed)."""
        for sid in list(self.watchers):
            if sid in self.agents:
                self._refresh(sid)
                self._broadcast_status(sid)

    # ---- lifecycle -----------------------------------------------------------------

    async def close_all(self) -> None:
        """Close every connection (server shutting down): agents will reconnect."""
        await self.tasks.close()
        for viewer in list(self.viewers):
            await self.close_viewer(
                viewer, "going_away", "server shutting down", p.CloseCode.GOING_AWAY
            )
        aside = [c for conns in self.contested.values() for c in conns]
        for conn in [*self.agents.values(), *self.companions.values(), *aside]:
            await conn.outbox.close()
            if not conn.ws.closed:
                try:
                    async with asyncio.timeout(2):
                        await conn.ws.close(
                            code=p.CloseCode.GOING_AWAY, message=b"server shutting down"
                        )
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        self.agents.clear()
        self.companions.clear()
        self.contested.clear()
