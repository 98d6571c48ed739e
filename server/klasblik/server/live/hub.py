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
import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from klasblik import protocol as p
from klasblik.server.live.outbox import Outbox
from klasblik.server.locations.rule import Placed
from klasblik.server.settings import Settings
from klasblik.server.storage.blobs.base import tabs_name, thumbnail_name
from klasblik.server.storage.latest import LatestWriter
from klasblik.server.tasks import TaskOwner

if TYPE_CHECKING:
    from klasblik.server.live.cluster.link import Cluster

__all__ = ["AgentConn", "Hub", "Placed", "Viewer"]

log = logging.getLogger(__name__)

_MODE_RANK = {"off": 0, "grid": 1, "focus": 2}


def _iso(ts: dt.datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


@dataclass(eq=False)
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
    last_seen: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    capture_error: str | None = None
    tabs: list[dict[str, Any]] = field(default_factory=list)
    watch: dict[str, Any] | None = None
    frames_in: int = 0

    @property
    def mode(self) -> str:
        return self.watch["mode"] if self.watch else "off"


@dataclass(eq=False)
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


class Hub:
    """In-process routing of frames, tabs, status and watch commands."""

    def __init__(self, settings: Settings, latest: LatestWriter) -> None:
        self.settings = settings
        self.latest = latest
        self.agents: dict[int, AgentConn] = {}
        self.viewers: set[Viewer] = set()
        #: student id -> viewer -> mode ("grid" or "focus")
        self.watchers: dict[int, dict[Viewer, str]] = {}
        self.frames_relayed = 0
        #: when each student that went offline in this process was last seen
        self._offline_seen: dict[int, dt.datetime] = {}
        self._grid_gap = settings.grid_interval_ms / 1000 * 0.9
        #: None when this viewer may see this device now, else why not (a protocol code);
        #: either may be on another instance, so the rule reads only where each is
        self.gate: Callable[[Placed, Placed], str | None] | None = None
        #: routing between instances (``live/cluster``); None: this process only
        self.cluster: Cluster | None = None
        #: short-lived tasks: closing a replaced agent, a silent one, a slow viewer
        self.tasks = TaskOwner("hub")

    def blocked(self, viewer: Placed, conn: Placed | None) -> str | None:
        """None when ``viewer`` may see ``conn`` now, else why not. Fails closed: with no
        location rule installed, nothing is shown."""
        if conn is None:
            return None
        if self.gate is None:
            return p.ErrorCode.ELSEWHERE
        return self.gate(viewer, conn)

    # ---- agents -------------------------------------------------------------------

    def attach_agent(self, conn: AgentConn) -> AgentConn | None:
        """Register an authenticated agent; return the older connection it replaces."""
        old = self.agents.get(conn.student_id)
        self.agents[conn.student_id] = conn
        if self.cluster is not None:
            self.cluster.agent_attached(conn)
        self._refresh(conn.student_id, force=True)
        self._broadcast_status(conn.student_id)
        return old

    def detach_agent(self, conn: AgentConn) -> None:
        if self.agents.get(conn.student_id) is conn:
            del self.agents[conn.student_id]
            conn.last_seen = dt.datetime.now(dt.UTC)
            self._offline_seen[conn.student_id] = conn.last_seen
            if self.cluster is not None:
                self.cluster.agent_detached(conn.student_id)
            self._broadcast_status(conn.student_id)

    def status(
        self, student_id: int, last_seen: dt.datetime | None = None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        conn = self.agents.get(student_id)
        if conn is not None:
            why = self.blocked(viewer, conn) if viewer is not None else None
            state = {
                "online": True,
                "last_seen": _iso(conn.last_seen),
                "capture_error": conn.capture_error,
                "elsewhere": why == p.ErrorCode.ELSEWHERE,
                "mode": "off" if why else conn.mode,
            }
        else:
            cluster = self.cluster  # held by another instance?
            remote = cluster.remote_status(student_id) if cluster is not None else None
            if cluster is None or remote is None:
                seen = self._offline_seen.get(student_id) or last_seen
                return {
                    "online": False,
                    "last_seen": _iso(seen),
                    "capture_error": None,
                    "elsewhere": False,
                    "mode": "off",
                }
            device = cluster.remote_device(student_id)
            why = self.blocked(viewer, device) if viewer is not None else None
            state = dict(remote, elsewhere=why == p.ErrorCode.ELSEWHERE)
            state["mode"] = "off" if why else remote.get("mode", "off")
        if why == p.ErrorCode.OUTSIDE_LESSON_HOURS:
            state["outside_lesson_hours"] = True
        return state

    def touch(self, conn: AgentConn) -> None:
        conn.last_seen = dt.datetime.now(dt.UTC)

    def on_frame(self, conn: AgentConn, data: bytes, header: p.FrameHeader) -> int:
        """Relay one validated agent frame; return to how many viewers it was queued."""
        if conn.mode == "off" or self.agents.get(conn.student_id) is not conn:
            return 0  # nobody asked for it: never relay or keep a frame nobody watches
        conn.frames_in += 1
        sid = conn.student_id
        if conn.capture_error is not None:  # a new picture: capturing works again
            conn.capture_error = None
            self._broadcast_status(sid)
        sent, allowed = self.relay_frame(sid, data, header.kind, conn)
        if self.cluster is not None and self.cluster.publish_frame(conn, data):
            allowed = True  # a viewer on another instance may see it
        if not allowed:  # the rule changed since the last watch: quieten the agent now
            self._refresh(sid)
            return 0
        self.latest.offer(thumbnail_name(sid), bytes(data[p.FRAME_HEADER_SIZE :]))
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
        for viewer, mode in watchers.items():
            if self.blocked(viewer, device):
                continue
            allowed = True
            if (
                mode == "grid"
                and kind == p.FrameKind.FOCUS
                and now - viewer.last_sent.get(sid, float("-inf")) < self._grid_gap
            ):
                continue  # a grid tile does not need focus-rate frames
            if payload is None:
                payload = p.viewer_frame_prefix(sid) + data
            viewer.last_sent[sid] = now
            if viewer.outbox.put(payload):
                sent += 1
        self.frames_relayed += sent
        return sent, allowed

    def relay_text(self, sid: int, text: str, device: Placed) -> bool:
        """Queue a text message (tabs) to this process's viewers of ``sid`` that may see
        ``device``; return whether any may."""
        allowed = [v for v in self.watchers.get(sid, {}) if not self.blocked(v, device)]
        for viewer in allowed:
            viewer.outbox.put(text)
        return bool(allowed)

    def on_tabs(self, conn: AgentConn, tabs: list[dict[str, Any]]) -> None:
        if conn.mode == "off" or self.agents.get(conn.student_id) is not conn:
            return
        clean = [
            {
                "title": t["title"],
                "url": t.get("url", ""),
                "active": bool(t.get("active", False)),
                "window": int(t.get("window", 0)),
            }
            for t in tabs
        ]
        conn.tabs = clean
        sid = conn.student_id
        text = p.encode_message({"type": "tabs", "student_id": sid, "tabs": clean})
        allowed = self.relay_text(sid, text, conn)
        if self.cluster is not None and self.cluster.publish_tabs(conn, text):
            allowed = True
        if not allowed:
            self._refresh(sid)
            return
        self.latest.offer(tabs_name(sid), json.dumps(clean, ensure_ascii=False).encode())

    def on_capture_error(self, conn: AgentConn, reason: str) -> None:
        conn.capture_error = reason[:300]
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
        if not viewer.ws.closed:
            try:
                await asyncio.wait_for(
                    viewer.ws.send_str(
                        p.encode_message(
                            {"type": "closed", "error": {"code": code, "message": message}}
                        )
                    ),
                    timeout=1,
                )
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(
                    viewer.ws.close(code=close_code, message=message.encode()[:120]), timeout=2
                )
            except (TimeoutError, ConnectionError, RuntimeError):
                pass

    def viewer_too_slow(self, viewer: Viewer) -> None:
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

    def _refresh(self, student_id: int, force: bool = False) -> None:
        conn = self.agents.get(student_id)
        if conn is None:
            return
        want = self.desired_watch(student_id)
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
            viewer.outbox.put(texts[key])

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
        for conn in list(self.agents.values()):
            await conn.outbox.close()
            if not conn.ws.closed:
                try:
                    await asyncio.wait_for(
                        conn.ws.close(code=p.CloseCode.GOING_AWAY, message=b"server shutting down"),
                        timeout=2,
                    )
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        self.agents.clear()
