"""Routing between several server instances through Redis (``redis_url``).

Each instance keeps its own :class:`~klasblik.server.live.hub.Hub`; this module connects the
hubs. Nothing here ever waits for a WebSocket: Redis messages are handed to the hub, whose
per-viewer outboxes do the sending.

- **Demand.** An instance with viewers publishes, on ``kb:demand``, the mode and viewer
  names it wants per student, on every change and in full every ``cluster_refresh_s``.
  Every instance keeps the demand of the others (dropped when an instance stays silent
  for three periods) and merges it into the watch it sends to the agents it holds.
- **Frames, tabs, status.** The instance holding an agent sends what the agent sends only
  while another instance wants that student: frames and tabs in bundles, one Redis message
  per receiving instance for all the frames for it that came in within 20 ms, on
  that instance's inbox ``kb:i:<instance>``; status, and everything for a student that an
  instance of an older version (no bundles in its demand) wants, on ``kb:s:<student id>``.
  Instances with viewers subscribe to their inbox and to those students' channels, and
  relay the same bytes to their viewers. Once
  subscribed to a new student, an instance asks for the current state (``"ask"`` in its
  demand message), and the holding instance answers with the agent's tabs and status.
- **Rechecks.** When IT sets or clears a student's do-not-view entry on one instance, it
  publishes the student on ``kb:recheck``; the instance holding that student's agent
  looks the entry up in the database at once (``on_recheck``) instead of at its next
  access check. The message carries no decision: a forged one costs a query, nothing more.
- **Presence.** ``kb:p:<student id>`` names the instance holding the agent, with a TTL of
  three periods refreshed while the agent stays connected; an instance that dies lets its
  keys expire, so the grid shows those students offline until they reconnect elsewhere.

Redis going away leaves every instance serving its own agents and viewers (local-only),
reports ``redis: down`` in ``/healthz``, and reconnects with backoff.

What goes over Redis, byte for byte, is :mod:`~klasblik.server.live.cluster.codec`'s; this
module keeps the connection, the pipelines, the supervision and the hub's hooks.

**A bad message from Redis** (anything the codec refuses with
:class:`~klasblik.server.live.cluster.codec.ClusterMessageError`: a message on a channel, or
a presence value) is dropped whole and counted in ``rejected``; a warning names its
channel or key and the error's code, at most once a minute per code. Nothing of it is
applied, and the reader, the subscriber and the refresher go on: one broken or hostile
publisher cannot take the link down. A message that decodes but then fails in the hub is a
bug of ours: it is logged with its traceback and dropped, and the reader goes on too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from klasblik.server.live.cluster import codec
from klasblik.server.live.cluster.codec import (
    DEMAND_CHANNEL,
    MAX_RECHECK_IDS,
    RECHECK_CHANNEL,
    Bundle,
    ClusterMessageError,
    DemandEntry,
    Place,
    presence_key,
    student_channel,
)
from klasblik.server.live.hub import AgentConn, Hub
from klasblik.server.tasks import cancel_and_wait

__all__ = ["DEMAND_CHANNEL", "Cluster", "presence_key", "student_channel"]

log = logging.getLogger(__name__)

_RANK = {"off": 0, "grid": 1, "focus": 2}
#: published frames waiting for Redis beyond this many bytes are dropped (pub/sub has no
#: replay anyway; a viewer misses a frame rather than everyone waiting)
_MAX_PENDING_BYTES = 16 * 1024 * 1024
_MAX_PENDING_ITEMS = 100_000
_BACKOFF_MAX_S = 5.0
_SLICE = 256  # commands per Redis pipeline
_DELETE_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
#: presence keys renewed per script call: one command for many keys instead of a SET each
#: (the client packs and parses a command in about 10 µs), short enough that Redis is
#: never held for long by one
_RENEW_CHUNK = 256
_SET_ALL = """
for i = 1, #KEYS do redis.call('set', KEYS[i], ARGV[i + 1], 'px', ARGV[1]) end
return #KEYS
"""
_REJECT_LOG_EVERY_S = 60.0  # a bad message is logged at most this often per error code
#: a bundle this big is queued for Redis at once, and the next one begun
_BUNDLE_BYTES = 256 * 1024
#: with only bundles to write, the publisher lets the frames that come in this long join
#: them: each pipeline costs the client 100-300 µs of Python whatever it holds, so one per
#: frame cost more than the frame's own relaying (docs/performance.md, the cluster's round)
_GATHER_S = 0.02

#: a queued Redis command: ("pub", channel, message), ("set" | "delown", key, value), or
#: ("setall", keys, values): the presence of many agents, renewed in one script call
_Op = tuple[str, Any, Any]


def _go_on() -> None:
    """Stop the running task if it was asked to. A redis-py command can swallow a
    cancellation: with a socket timeout, redis-py 8.1 sends each command through
    ``asyncio.wait_for``, and Python 3.11's ``wait_for`` returns the result instead of
    raising when the cancellation comes once the send has finished but before it woke
    the caller (a task running commands back to back, cancelled at random moments, ran on
    300 times of 300). The task is then marked as cancelling but runs on, and its next
    wait never ends: closing the link hung. Each loop of the link calls this before it
    waits again, and so does every other await on Redis that a cancellation may meet."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _place_of(conn: AgentConn) -> Place:
    return Place(conn.location_id, conn.home_location_id)


class Cluster:
    """The Redis link of one instance; the hub calls its hooks, which never block."""

    def __init__(self, hub: Hub, url: str, refresh_s: float) -> None:
        self.hub = hub
        self.url = url
        self.refresh_s = refresh_s
        self.ttl_ms = max(1000, int(refresh_s * 3000))
        self.instance = codec.instance_name(socket.gethostname(), os.getpid(), secrets.token_hex(3))
        #: the channel other instances send this one's bundles on
        self.inbox = codec.inbox_channel(self.instance)
        #: instances whose last demand said they read bundles
        self._readers: set[str] = set()
        #: receiving instance -> the bundle being written for it (queued by _seal)
        self._open: dict[str, Bundle] = {}
        self.up = False
        self.last_error: str | None = "not connected yet"
        #: student id -> instance -> its viewers (mode, name, location, home location)
        self._remote: dict[int, dict[str, tuple[DemandEntry, ...]]] = {}
        self._instance_seen: dict[str, float] = {}
        #: student id -> (holding instance, status dict) for agents held elsewhere
        self._remote_state: dict[int, tuple[str, dict[str, Any]]] = {}
        #: student id -> where the device held elsewhere is (for the location rule)
        self._remote_place: dict[int, Place] = {}
        #: student id -> presence value of the agents held here ("instance loc home")
        self._presence: dict[int, bytes] = {}
        self._queue: collections.deque[_Op] = collections.deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._subs_changed = asyncio.Event()
        self._subscribed: set[int] = set()
        self._demand_dirty: set[int] = set()
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        #: frames and tabs put in bundles (``published`` counts Redis commands, a bundle one)
        self.bundled = 0
        self.received = 0
        self.dropped = 0
        #: messages and presence values from Redis refused by the codec (and dropped)
        self.rejected = 0
        #: error code -> (when it was last logged, how many went unlogged since)
        self._reject_log: dict[str, tuple[float, int]] = {}
        #: called with (what, student ids held here) when another instance asks for a
        #: recheck (app.py: the do-not-view look-up); never awaited here
        self.on_recheck: Callable[[str, tuple[int, ...]], None] | None = None
        hub.cluster = self

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="cluster")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                # say goodbye: others drop this instance's demand and presence at once
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.publish(DEMAND_CHANNEL, codec.encode_demand(self.instance, {}, full=True))
                    for sid, value in self._presence.items():
                        pipe.eval(_DELETE_IF_OWNER, 1, presence_key(sid), value)
                    async with asyncio.timeout(2):
                        await pipe.execute()
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()
            self._client = None
        self.hub.cluster = None

    @property
    def queued_bytes(self) -> int:
        """Bytes of published frames waiting for Redis (``/metrics``)."""
        return self._queued_bytes

    @property
    def health(self) -> str:
        return "ok" if self.up else f"down: {self.last_error}"

    async def _supervise(self) -> None:
        backoff = 0.2
        while True:
            # RESP2: redis-py's RESP3 parser formats every pub/sub message (each frame's
            # bytes) into a debug string, even with debug logging off
            client = aioredis.Redis.from_url(
                self.url,
                protocol=2,
                socket_connect_timeout=2,
                socket_timeout=5,
                health_check_interval=0,
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await client.ping()
                await pubsub.subscribe(DEMAND_CHANNEL, RECHECK_CHANNEL, self.inbox)
                self._subscribed = set()
                self._client = client
                self._queue.clear()
                self._queued_bytes = 0
                self.up = True
                self.last_error = None
                backoff = 0.2
                log.info("cluster: connected to Redis as instance %s", self.instance)
                self._on_connected()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._reader(pubsub))
                    tg.create_task(self._subscriber(pubsub))
                    tg.create_task(self._publisher(client))
                    tg.create_task(self._refresher(client))
            except asyncio.CancelledError:
                self.up = False
                raise
            except (RedisError, OSError, ExceptionGroup) as exc:
                self._went_down(exc)
            finally:
                with contextlib.suppress(Exception):
                    # redis-py's PubSub.aclose carries no annotations
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            self._client = None
            with contextlib.suppress(Exception):
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(_BACKOFF_MAX_S, backoff * 2)

    def _went_down(self, exc: BaseException) -> None:
        while isinstance(exc, ExceptionGroup):
            exc = exc.exceptions[0]
        reason = f"{type(exc).__name__}: {exc}"[:200]
        if self.up or self.last_error != reason:
            log.warning("cluster: Redis unavailable, serving local viewers only (%s)", reason)
        self.up = False
        self.last_error = reason
        self._queue.clear()
        self._open.clear()
        self._queued_bytes = 0
        # forget what only Redis can keep current: other instances' demand and agents
        demanded = list(self._remote)
        states = list(self._remote_state)
        self._remote.clear()
        self._instance_seen.clear()
        self._readers.clear()
        self._remote_state.clear()
        for sid in demanded:
            self.hub.refresh_watch(sid)
        for sid in states:
            self.hub.broadcast_status(sid)

    def _on_connected(self) -> None:
        self._subs_changed.set()
        self._send_full_demand()
        self._renew_presence()

    # ---- hooks called by the hub (never block) -------------------------------------

    def agent_attached(self, conn: AgentConn) -> None:
        sid = conn.student_id
        self._remote_state.pop(sid, None)
        self._remote_place.pop(sid, None)
        value = codec.encode_presence(self.instance, _place_of(conn))
        self._presence[sid] = value
        self._enqueue(("set", presence_key(sid), value))

    def agent_detached(self, sid: int) -> None:
        value = self._presence.pop(sid, None)
        if value is not None:
            self._enqueue(("delown", presence_key(sid), value))

    def remote_device(self, sid: int) -> Place:
        """Where the device of a student held elsewhere is (unknown: off-site)."""
        return self._remote_place.get(sid, codec.NOWHERE)

    def demand_changed(self, sid: int) -> None:
        self._demand_dirty.add(sid)
        self._subs_changed.set()
        self._wake.set()

    def remote_demand(self, conn: AgentConn) -> tuple[str, frozenset[str]]:
        """The mode and viewer names other instances want of this agent, counting only
        viewers the location rule lets see it now."""
        wants = self._remote.get(conn.student_id)
        if not wants:
            return "off", frozenset()
        mode = "off"
        names: set[str] = set()
        for entries in wants.values():
            for entry in entries:  # each entry is where its viewer is
                if self.hub.blocked(entry, conn):
                    continue
                if _RANK[entry.mode] > _RANK[mode]:
                    mode = entry.mode
                names.add(entry.name)
        return mode, frozenset(names)

    def _route(self, conn: AgentConn) -> list[str] | None:
        """The instances whose viewers the location rule lets see this agent now, when
        all of them read bundles; None when none may, [] when one of them reads only the
        student's channel (an older version)."""
        wants = self._remote.get(conn.student_id)
        if not wants:
            return None
        readers = self._readers
        to: list[str] = []
        old = False
        for inst, entries in wants.items():
            for entry in entries:
                if not self.hub.blocked(entry, conn):
                    if inst in readers:
                        to.append(inst)
                    else:
                        old = True
                    break
        if old:
            return []
        return to or None

    def remote_status(self, sid: int) -> dict[str, Any] | None:
        held = self._remote_state.get(sid)
        return held[1] if held else None

    def publish_frame(self, conn: AgentConn, data: bytes) -> bool:
        """Send a frame to the instances that want it; False when none may see it."""
        if not self.up:
            return False
        to = self._route(conn)
        if to is None:
            return False
        if self._queued_bytes > _MAX_PENDING_BYTES:
            self.dropped += 1
            return True
        self._queued_bytes += len(data)
        if to:
            self._bundle(to, conn.student_id, codec.frame_parts(_place_of(conn), data))
        else:
            message = codec.encode_frame(_place_of(conn), data)
            self._enqueue(("pub", student_channel(conn.student_id), message))
        return True

    def publish_tabs(self, conn: AgentConn, text: str) -> bool:
        if not self.up:
            return False
        to = self._route(conn)
        if to is None:
            return False
        message = codec.encode_tabs(_place_of(conn), text)
        if to:
            self._bundle(to, conn.student_id, (message,))
        else:
            self._enqueue(("pub", student_channel(conn.student_id), message))
        return True

    def _bundle(self, to: list[str], sid: int, message: tuple[bytes, ...]) -> None:
        """Add a student message to the open bundle of each instance in ``to``."""
        for inst in to:
            bundle = self._open.get(inst)
            if bundle is None:
                bundle = self._open[inst] = Bundle()
            bundle.add(sid, *message)
            if bundle.size >= _BUNDLE_BYTES:
                del self._open[inst]
                self._queue_bundle(inst, bundle)
        self.bundled += 1
        self._wake.set()

    def _seal(self) -> None:
        """Queue the open bundles, so that what is queued after them goes out after them."""
        if self._open:
            for inst, bundle in self._open.items():
                self._queue_bundle(inst, bundle)
            self._open.clear()

    def _queue_bundle(self, inst: str, bundle: Bundle) -> None:
        self._queue.append(("pub", codec.inbox_channel(inst), bytes(bundle)))

    def publish_status(self, conn: AgentConn, state: dict[str, Any]) -> None:
        message = codec.encode_status(self.instance, state, _place_of(conn))
        self._enqueue(("pub", student_channel(conn.student_id), message))

    def ask_recheck(self, what: str, student_ids: Sequence[int]) -> None:
        """Ask every other instance to look ``what`` up again for these students now
        (lost while Redis is down: the periodic access check still applies it)."""
        ids = sorted(set(student_ids))
        for start in range(0, len(ids), MAX_RECHECK_IDS):
            chunk = ids[start : start + MAX_RECHECK_IDS]
            message = codec.encode_recheck(self.instance, what, chunk)
            self._enqueue(("pub", RECHECK_CHANNEL, message))

    def _on_recheck(self, recheck: codec.Recheck) -> None:
        if recheck.instance == self.instance or self.on_recheck is None:
            return
        held = tuple(sid for sid in recheck.students if sid in self.hub.agents)
        if held:
            self.on_recheck(recheck.what, held)

    async def load_presence(self, student_ids: list[int]) -> None:
        """Learn which of these students' agents other instances hold (before a grid opens)."""
        client = self._client
        ids = [sid for sid in student_ids if sid not in self.hub.agents]
        if client is None or not self.up or not ids:
            return
        try:
            async with asyncio.timeout(2):
                owners = await client.mget([presence_key(s) for s in ids])
            _go_on()  # a dashboard's command cancelled meanwhile: do not go on with it
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cluster: presence lookup failed: %s", exc)
            return
        self._apply_presence(ids, owners, broadcast=False)

    # ---- internals -----------------------------------------------------------------

    def _enqueue(self, item: _Op) -> None:
        if not self.up:
            return
        if len(self._queue) >= _MAX_PENDING_ITEMS:
            self.dropped += 1
            return
        self._seal()
        self._queue.append(item)
        self._wake.set()

    def _renew_presence(self) -> None:
        """Write every agent's presence key again (its time to live starts over), in
        script calls of ``_RENEW_CHUNK`` keys."""
        items = list(self._presence.items())
        for i in range(0, len(items), _RENEW_CHUNK):
            chunk = items[i : i + _RENEW_CHUNK]
            keys = tuple(presence_key(sid) for sid, _ in chunk)
            self._enqueue(("setall", keys, tuple(value for _, value in chunk)))

    def _local_demand(self, sid: int) -> list[DemandEntry]:
        """This instance's viewers of ``sid`` (the codec puts them in order)."""
        return [
            DemandEntry(mode, v.staff_name, v.location_id, v.home_location_id)
            for v, mode in self.hub.watchers.get(sid, {}).items()
        ]

    def _send_full_demand(self) -> None:
        self._demand_dirty.clear()
        demand = {sid: self._local_demand(sid) for sid in self.hub.watchers}
        message = codec.encode_demand(self.instance, demand, full=True, bundles=True)
        self._enqueue(("pub", DEMAND_CHANNEL, message))

    def _ask_state(self, ids: list[int]) -> None:
        """Now that their channels are subscribed, ask the instances holding these agents
        for their current tabs and status (sent with the demand, so it arrives first)."""
        demand = {sid: self._local_demand(sid) for sid in ids}
        message = codec.encode_demand(self.instance, demand, full=False, ask=True, bundles=True)
        self._enqueue(("pub", DEMAND_CHANNEL, message))

    def _flush_demand(self) -> None:
        if not self._demand_dirty:
            return
        demand = {sid: self._local_demand(sid) for sid in self._demand_dirty}
        self._demand_dirty.clear()
        message = codec.encode_demand(self.instance, demand, full=False, bundles=True)
        self._enqueue(("pub", DEMAND_CHANNEL, message))

    async def _publisher(self, client: aioredis.Redis) -> None:
        while True:
            _go_on()
            await self._wake.wait()
            if self._open and not self._queue and not self._demand_dirty:
                # only bundles to write: let more frames join them; anything else (demand,
                # presence, status, a recheck) goes out at once, with what is bundled so far
                await asyncio.sleep(_GATHER_S)
            self._wake.clear()
            self._flush_demand()
            self._seal()
            if not self._queue:
                continue
            # in slices: a presence refresh of thousands of agents must not hold the event
            # loop (and the frames queued behind it) for one long burst
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), _SLICE))]
            self._queued_bytes = max(
                0, self._queued_bytes - sum(len(item[2]) for item in batch if item[0] == "pub")
            )
            if self._queue:
                self._wake.set()
            async with client.pipeline(transaction=False) as pipe:
                for item in batch:
                    op = item[0]
                    if op == "pub":
                        pipe.publish(item[1], item[2])
                    elif op == "set":
                        pipe.set(item[1], item[2], px=self.ttl_ms)
                    elif op == "setall":
                        pipe.eval(_SET_ALL, len(item[1]), *item[1], self.ttl_ms, *item[2])
                    else:  # "delown"
                        pipe.eval(_DELETE_IF_OWNER, 1, item[1], item[2])
                await pipe.execute()
            self.published += len(batch)

    async def _subscriber(self, pubsub: Any) -> None:
        """Keep one channel subscription per student this instance has viewers for."""
        while True:
            _go_on()
            await self._subs_changed.wait()
            self._subs_changed.clear()
            wanted = set(self.hub.watchers)
            new = wanted - self._subscribed
            gone = self._subscribed - wanted
            if new:
                await pubsub.subscribe(*(student_channel(s) for s in new))
                self._subscribed |= new
                # students seen for the first time here: learn where their agents are
                client = self._client
                ids = [s for s in new if s not in self.hub.agents]
                if client is not None and ids:
                    owners = await client.mget([presence_key(s) for s in ids])
                    self._apply_presence(ids, owners, broadcast=True)
                    self._ask_state(ids)
            if gone:
                await pubsub.unsubscribe(*(student_channel(s) for s in gone))
                self._subscribed -= gone
                for sid in gone:
                    if sid not in self.hub.watchers:
                        self._remote_state.pop(sid, None)
                        self._remote_place.pop(sid, None)

    async def _reader(self, pubsub: Any) -> None:
        # Any: redis-py leaves PubSub.get_message unannotated and types .connection as None
        while True:
            _go_on()
            # no timeout: a timed read arms and cancels a timer for every relayed frame; a
            # lost connection ends the read with an error (and the refresher's writes on
            # the other connection notice a Redis that stopped answering)
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if msg is None:
                if not pubsub.connection or not pubsub.connection.is_connected:
                    raise ConnectionError("pub/sub connection lost")
                continue
            if msg["type"] != "message":
                continue
            self.received += 1
            channel = msg["channel"]
            data = msg["data"]
            try:
                if channel == self.inbox:
                    self._on_bundle(codec.decode_bundle(data))
                elif channel == DEMAND_CHANNEL:
                    self._on_demand(codec.decode_demand(data))
                elif channel == RECHECK_CHANNEL:
                    self._on_recheck(codec.decode_recheck(data))
                else:
                    self._on_student_message(codec.parse_student_channel(channel), data)
            except ClusterMessageError as exc:
                self._reject(channel, exc)
            except Exception:
                log.exception("cluster: a message on %r failed in the hub; dropped", channel)

    def _on_bundle(self, items: list[tuple[int, bytes]]) -> None:
        """Apply each message of a bundle; a bad one is dropped alone."""
        for sid, message in items:
            try:
                self._on_student_message(sid, message)
            except ClusterMessageError as exc:
                self._reject(self.inbox, exc)
            except Exception:
                log.exception("cluster: a message in a bundle for %s failed in the hub", sid)

    def _reject(self, where: object, exc: ClusterMessageError) -> None:
        """Count a refused message; log it, at most once a minute per error code."""
        self.rejected += 1
        now = time.monotonic()
        last, unlogged = self._reject_log.get(exc.code, (float("-inf"), 0))
        if now - last < _REJECT_LOG_EVERY_S:
            self._reject_log[exc.code] = (last, unlogged + 1)
            return
        self._reject_log[exc.code] = (now, 0)
        more = f" ({unlogged} more since the last warning)" if unlogged else ""
        log.warning(
            "cluster: dropped a bad message on %r: %s: %s%s", where, exc.code, exc.message, more
        )

    async def _refresher(self, client: aioredis.Redis) -> None:
        while True:
            _go_on()
            await asyncio.sleep(self.refresh_s)
            await client.ping()
            self._send_full_demand()
            self._renew_presence()
            self._expire_instances()
            remote = [s for s in self.hub.watchers if s not in self.hub.agents]
            if remote:
                owners = await client.mget([presence_key(s) for s in remote])
                self._apply_presence(remote, owners, broadcast=True)

    def _on_demand(self, demand: codec.Demand) -> None:
        inst = demand.instance
        if inst == self.instance:
            return
        self._instance_seen[inst] = time.monotonic()
        if demand.bundles:
            self._readers.add(inst)
        else:
            self._readers.discard(inst)
        changed: set[int] = set()
        if demand.full:
            for sid, wants in list(self._remote.items()):
                if inst in wants and sid not in demand.students:
                    del wants[inst]
                    changed.add(sid)
                    if not wants:
                        del self._remote[sid]
        for sid, entries in demand.students.items():
            if not entries:
                known = self._remote.get(sid)
                if known and known.pop(inst, None) is not None:
                    changed.add(sid)
                    if not known:
                        del self._remote[sid]
                continue
            wants = self._remote.setdefault(sid, {})
            if wants.get(inst) != entries:
                wants[inst] = entries
                changed.add(sid)
        asked = set(demand.students) if demand.ask else set()
        for sid in changed:
            conn = self.hub.agents.get(sid)
            if conn is not None:
                # a viewer elsewhere needs a whole picture to paint deltas on
                self.hub.request_key(conn)
                self.hub.refresh_watch(sid)
                if conn.tabs and sid not in asked:  # a new viewer elsewhere: tabs so far
                    self.publish_tabs(conn, codec.tabs_text(sid, conn.tabs))
        for sid in asked:  # an instance that just subscribed: its current tabs and status
            conn = self.hub.agents.get(sid)
            if conn is None or inst not in self._remote.get(sid, {}):
                continue
            if conn.tabs:
                self.publish_tabs(conn, codec.tabs_text(sid, conn.tabs))
            self.publish_status(conn, self.hub.status(sid))

    def _expire_instances(self) -> None:
        limit = time.monotonic() - 3 * self.refresh_s
        for inst in [i for i, seen in self._instance_seen.items() if seen < limit]:
            del self._instance_seen[inst]
            self._readers.discard(inst)
            log.info("cluster: instance %s went silent; dropping its demand", inst)
            for sid, wants in list(self._remote.items()):
                if wants.pop(inst, None) is not None:
                    if not wants:
                        del self._remote[sid]
                    self.hub.refresh_watch(sid)

    def _on_student_message(self, sid: int, data: object) -> None:
        if sid in self.hub.agents:
            return  # the agent is here now; a message from its old instance is stale
        msg = codec.decode_student_message(sid, data)
        if isinstance(msg, codec.FrameMessage):
            self._remote_place[sid] = msg.place
            self.hub.relay_frame(sid, msg.frame, msg.kind, msg.place)
        elif isinstance(msg, codec.TabsMessage):
            self._remote_place[sid] = msg.place
            self.hub.relay_text(sid, msg.text, msg.place)
        else:
            held = self._remote_state.get(sid)
            if not msg.online and held is not None and held[0] != msg.instance:
                return  # an old instance saying goodbye after the agent moved on
            if msg.online:
                self._remote_state[sid] = (msg.instance, msg.state)
                self._remote_place[sid] = msg.place
            else:
                self._remote_state.pop(sid, None)
                self.hub._offline_seen[sid] = msg.last_seen or dt.datetime.now(dt.UTC)
            self.hub.broadcast_status(sid)

    def _apply_presence(self, ids: list[int], owners: Sequence[object], broadcast: bool) -> None:
        """Apply the presence values read for these students (None: no key); a value the
        codec refuses leaves that student as it was."""
        for sid, owner in zip(ids, owners, strict=True):
            if sid in self.hub.agents:
                continue
            presence = None
            if owner is not None:
                try:
                    presence = codec.parse_presence(owner)
                except ClusterMessageError as exc:
                    self._reject(presence_key(sid), exc)
                    continue
            held = self._remote_state.get(sid)
            if presence is None or presence.instance == self.instance:
                if held is not None:
                    self._remote_state.pop(sid, None)
                    self.hub._offline_seen[sid] = _seen(held[1].get("last_seen"))
                    if broadcast:
                        self.hub.broadcast_status(sid)
                continue
            inst = presence.instance
            self._remote_place[sid] = presence.place
            if held is None or held[0] != inst:
                state = {
                    "online": True,
                    "last_seen": held[1].get("last_seen") if held else None,
                    "capture_error": None,
                    "elsewhere": False,
                    "mode": held[1].get("mode", "off") if held else "off",
                }
                self._remote_state[sid] = (inst, state)
                if broadcast:
                    self.hub.broadcast_status(sid)


def _seen(value: object) -> dt.datetime:
    """When an agent held elsewhere was last seen, from its status (read when the status
    came, so it parses); now when the status does not say."""
    try:
        seen = codec.parse_seen(value)
    except ClusterMessageError:
        seen = None
    return seen or dt.datetime.now(dt.UTC)
