"""The Azure store's bulk work, listing and deleting thousands of blobs, on the SDK's
synchronous client: on the store's threads (``BulkSide``) or in a worker process of its own
(``BulkWorker``, the server's way).

On threads, the work holds the server's GIL whenever it parses a listing page or builds
and reads a batch request, and the event loop waits meanwhile: a few milliseconds at a
time, but on a busy core the hand-overs between the loop and the store's threads added up
to 13–22 ms stalls of the whole process during a sweep (bench/retention_stalls.py). In a
worker process the same code holds its own GIL; the server only writes the names to
delete and reads the listed blobs, one JSON line per request and per answer, on the event
loop (about 0.1 ms for 250 blobs).

The worker is ``python -m klasblik.server.storage.blobs.azure_bulk``, started on first
use with the server's own interpreter. Its first line on stdin is its recipe (how to reach
the container: a connection string, or an account URL and a managed identity's client id,
never through the command line or the environment); then one request per line, answered
in any order on stdout by id. The server's own settings (``KLASBLIK_*``) are not in its
environment. Its log records come back as lines too and are logged by
the server under their own logger names. When stdin closes it finishes what is in flight
and exits; when it dies, every call in flight fails with a clear ``BlobStoreError`` and
the next call starts a new worker (a listing in progress cannot be resumed: it fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry

from klasblik.server.storage.blobs.base import BlobInfo, BlobStoreError

__all__ = [
    "DELETE_THREADS",
    "LIST_PAGE",
    "BulkSide",
    "BulkWorker",
    "Recipe",
    "from_timestamp",
    "sync_service",
    "why",
    "worker_environment",
]

# named, not __name__: the worker runs this module as __main__
log = logging.getLogger("klasblik.server.storage.blobs.azure_bulk")

#: Blobs per listing page. A page is parsed in one C call that holds the GIL throughout:
#: 1.7 ms for 250 blobs, 8 ms for 1,000, 69 ms for the service's default 5,000 (on the
#: store's threads, that is the event loop's wait). 250 means 400 requests per 100,000 blobs.
LIST_PAGE = 250
#: Threads for deleting: batches (or single deletes) in flight at once. Two keep a listing
#: page and a delete batch going together; more gained nothing on Azurite.
DELETE_THREADS = 2
#: The longest line the server reads from the worker (an answer of 250 blobs is ~25 KB).
MAX_LINE = 16 * 1024 * 1024
#: The worker's scheduling priority below the server's (``nice``): on a shared core the
#: kernel gives the event loop the core as soon as it wakes.
WORKER_NICE = 10
#: How long ``close`` waits for the worker to finish what is in flight before killing it.
CLOSE_WAIT_S = 30


def why(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{code}: {text}" if code else text


class Recipe(TypedDict):
    """How the worker reaches the container (a JSON object; it holds a secret)."""

    connection_string: str
    account_url: str
    #: with ``account_url``: the managed identity's client id ("" for the default one)
    client_id: str
    container: str
    background_retries: int
    connection_timeout: float
    read_timeout: float


def sync_service(recipe: Recipe, credential: Any = None) -> BlobServiceClient:
    """The synchronous client of the bulk work. Short, even back-offs and more tries than
    the live path: background work can wait, each try on another pooled connection (a
    benchmark run once met a reset connection on all of three tries)."""
    options: dict[str, Any] = {
        "retry_policy": LinearRetry(
            backoff=0.4,  # type: ignore[arg-type]  # seconds; the SDK takes floats
            retry_total=recipe["background_retries"],
            random_jitter_range=0.2,  # type: ignore[arg-type]
        ),
        "connection_timeout": recipe["connection_timeout"],
        "read_timeout": recipe["read_timeout"],
    }
    # the asynchronous client (aiohttp, ssl) trusts SSL_CERT_FILE; requests would not
    ca_file = os.environ.get("SSL_CERT_FILE")
    if ca_file and not os.environ.get("REQUESTS_CA_BUNDLE"):
        options["connection_verify"] = ca_file
    if recipe["connection_string"]:
        return BlobServiceClient.from_connection_string(recipe["connection_string"], **options)
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(
            managed_identity_client_id=recipe["client_id"] or None,
            exclude_interactive_browser_credential=True,
        )
    return BlobServiceClient(recipe["account_url"], credential=credential, **options)


class BulkSide:
    """Listing and deleting through one synchronous container client; its methods block
    and are called on threads (the store's, or the worker's)."""

    def __init__(self, container: ContainerClient) -> None:
        self.container = container
        #: None until the first batch tells whether batch delete works here.
        self.batch_delete_works: bool | None = None

    def listing(self, prefix: str) -> Iterator[Any]:
        return iter(
            self.container.list_blobs(name_starts_with=prefix or None, results_per_page=LIST_PAGE)
        )

    @staticmethod
    def take(blobs: Iterator[Any], n: int) -> list[BlobInfo]:
        """The next ``n`` listed blobs (fewer at the end)."""
        try:
            return [
                BlobInfo(item.name, int(item.size or 0), item.last_modified)
                for item in itertools.islice(blobs, n)
            ]
        except ResourceNotFoundError:
            return []  # no container yet: no blobs
        except AzureError as exc:
            raise BlobStoreError(f"cannot list blobs: {why(exc)}") from exc

    def delete_chunk(self, chunk: list[str]) -> int:
        """One batch of at most the service's limit; what it did not delete, one by one.
        404 (already gone), in a batch or alone, counts as gone."""
        if not chunk:
            return 0
        if self.batch_delete_works is not False and len(chunk) > 1:
            try:
                responses = list(self.container.delete_blobs(*chunk, raise_on_any_failure=False))
            except ResourceNotFoundError:
                return 0  # no container: nothing to delete
            except AzureError as exc:
                if not _looks_unsupported(exc):
                    raise BlobStoreError(f"batch delete failed: {why(exc)}") from exc
                responses = []
            statuses = [getattr(r, "status_code", 0) for r in responses]
            if len(statuses) != len(chunk):
                # the batch request itself was refused (no answer per blob): none deleted
                if self.batch_delete_works is None:
                    log.warning(
                        "blob batch delete is not available here (answers %s); using "
                        "single deletes",
                        sorted(set(statuses)) or "none",
                    )
                    self.batch_delete_works = False
                return self.delete_singles(chunk)
            self.batch_delete_works = True
            # 202 deleted, 404 already gone; anything else (throttled, failed) one by one
            left = [n for n, s in zip(chunk, statuses, strict=True) if s not in (202, 404)]
            if left:
                log.warning(
                    "a blob batch delete left %d of %d blob(s) (answers %s); deleting those "
                    "one by one",
                    len(left),
                    len(chunk),
                    sorted(set(statuses)),
                )
            return sum(1 for s in statuses if s == 202) + self.delete_singles(left)
        return self.delete_singles(chunk)

    def delete_singles(self, names: list[str]) -> int:
        deleted = 0
        for name in names:
            try:
                self.container.delete_blob(name)
                deleted += 1
            except ResourceNotFoundError:
                pass
            except AzureError as exc:
                raise BlobStoreError(f"delete failed: {why(exc)}") from exc
        return deleted


def _looks_unsupported(exc: AzureError) -> bool:
    """True when a whole batch request was refused as a request shape the service lacks."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status in (400, 404, 405, 501) or "batch" in str(exc).lower()


# --- the server's side ---------------------------------------------------------------


@dataclass
class _Running:
    proc: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class BulkWorker:
    """The server's handle on the worker process: ``call`` sends a request and waits for
    its answer. Started on first use, started again after it died."""

    def __init__(self, recipe: Recipe) -> None:
        self._recipe = recipe
        self._running: _Running | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        #: As the worker last reported it (None until a batch was tried).
        self.batch_delete_works: bool | None = None
        #: How many worker processes were started (a restart after a death adds one).
        self.starts = 0

    @property
    def pid(self) -> int | None:
        running = self._running
        return running.proc.pid if running is not None else None

    async def _start(self) -> _Running:
        async with self._lock:
            running = self._running
            if running is not None:
                return running
            try:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "klasblik.server.storage.blobs.azure_bulk",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=MAX_LINE,
                    env=worker_environment(),
                )
            except OSError as exc:
                raise BlobStoreError(
                    f"cannot start the blob store's worker process: {exc}"
                ) from exc
            assert proc.stdin is not None
            proc.stdin.write(_line(dict(self._recipe)))
            running = _Running(proc)
            running.reader = asyncio.create_task(self._read(running), name="azure-bulk-reader")
            self._running = running
            self.starts += 1
            return running

    async def _read(self, running: _Running) -> None:
        """Answers and log records, until the worker's stdout closes; then every call still
        waiting fails and the next call starts a new worker."""
        stdout = running.proc.stdout
        assert stdout is not None
        why = "its output closed"
        try:
            while line := await stdout.readline():
                msg = json.loads(line)
                if "log" in msg:
                    logging.getLogger(msg["name"]).log(msg["log"], "%s", msg["msg"])
                    continue
                if msg.get("batch") is not None:
                    self.batch_delete_works = msg["batch"]
                fut = running.pending.pop(msg["id"], None)
                if fut is None or fut.done():
                    continue  # its caller was cancelled
                if "error" in msg:
                    fut.set_exception(BlobStoreError(msg["error"]))
                else:
                    fut.set_result(msg["ok"])
        except (ValueError, KeyError, TypeError) as exc:  # a line too long, or not ours
            why = f"it wrote what is not an answer ({exc})"
            running.proc.kill()
        finally:
            if self._running is running:
                self._running = None
            code = await running.proc.wait()
            error = BlobStoreError(
                f"the blob store's worker process ended (exit code {code}; {why}): the "
                "listing or delete it was doing did not finish"
            )
            for fut in running.pending.values():
                if not fut.done():
                    fut.set_exception(error)
            running.pending.clear()

    async def call(self, op: str, **args: Any) -> Any:
        running = await self._start()
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        running.pending[rid] = fut
        stdin = running.proc.stdin
        assert stdin is not None
        try:
            stdin.write(_line({"id": rid, "op": op, **args}))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            running.pending.pop(rid, None)
            raise BlobStoreError(f"the blob store's worker process is gone: {exc}") from exc
        try:
            return await fut
        finally:
            running.pending.pop(rid, None)

    def forget(self, lid: int) -> None:
        """Drop an unfinished listing in the worker (no answer awaited)."""
        running = self._running
        if running is None or running.proc.stdin is None or running.proc.stdin.is_closing():
            return
        running.proc.stdin.write(_line({"op": "list_close", "lid": lid}))

    def next_listing(self) -> int:
        return next(self._ids)

    async def close(self) -> None:
        """Close the worker's stdin, let it finish what is in flight, and wait for it."""
        running = self._running
        if running is None:
            return
        assert running.proc.stdin is not None
        running.proc.stdin.close()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await running.proc.wait()
        except TimeoutError:
            log.warning(
                "the blob store's worker process did not stop within %d s; killed", CLOSE_WAIT_S
            )
            running.proc.kill()
        if running.reader is not None:
            await running.reader


def worker_environment() -> dict[str, str]:
    """The server's environment without its own settings (``KLASBLIK_*``: secrets among
    them); what the SDK reads (``AZURE_*``, ``IDENTITY_*``, ``SSL_CERT_FILE``) stays."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KLASBLIK_")}


def _line(msg: dict[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


# --- the worker's side ---------------------------------------------------------------


class _Forward(logging.Handler):
    """Sends the worker's log records to the server as lines."""

    def __init__(self, send: Any) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send({"log": record.levelno, "name": record.name, "msg": record.getMessage()})
        except Exception:  # a log line must not break the work
            self.handleError(record)


def main() -> int:
    """The worker process: requests on stdin, answers on stdout (see the module's text)."""
    inp = sys.stdin.buffer
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write to the answers
    lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        data = _line(msg)
        with lock:
            out.write(data)
            out.flush()

    # Ctrl-C in the server's terminal reaches the whole group: the server stops the worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    first = inp.readline()
    if not first:
        return 0
    recipe: Recipe = json.loads(first)
    root = logging.getLogger()
    root.addHandler(_Forward(send))
    root.setLevel(logging.WARNING)
    logging.getLogger("klasblik").setLevel(logging.INFO)

    service = sync_service(recipe)
    side = BulkSide(service.get_container_client(recipe["container"]))
    listings: dict[int, Iterator[Any]] = {}

    def run(req: dict[str, Any]) -> None:
        try:
            if req["op"] == "delete":
                result: Any = side.delete_chunk(list(req["names"]))
            elif req["op"] == "list":
                lid = req["lid"]
                blobs = listings.get(lid)
                if blobs is None:
                    if "prefix" not in req:
                        raise BlobStoreError("the listing was lost (the worker was restarted)")
                    blobs = listings[lid] = side.listing(req["prefix"])
                infos = side.take(blobs, req["n"])
                if len(infos) < req["n"]:
                    listings.pop(lid, None)
                result = [[i.name, i.size, i.last_modified.timestamp()] for i in infos]
            else:
                raise BlobStoreError(f"unknown request {req['op']!r}")
        except BlobStoreError as exc:
            send({"id": req["id"], "error": str(exc), "batch": side.batch_delete_works})
        except Exception as exc:  # the server gets it as an error answer
            send({"id": req["id"], "error": f"{type(exc).__name__}: {exc}"})
        else:
            send({"id": req["id"], "ok": result, "batch": side.batch_delete_works})

    # a listing page and the delete batches in flight, each on a thread of its own
    with ThreadPoolExecutor(DELETE_THREADS + 1, thread_name_prefix="azure-bulk") as pool:
        for raw in inp:
            req = json.loads(raw)
            if req.get("op") == "list_close":
                listings.pop(req["lid"], None)
            else:
                pool.submit(run, req)
    side.container.close()
    service.close()
    return 0


def from_timestamp(ts: float) -> dt.datetime:
    """A listed blob's ``last_modified`` from the worker's answer."""
    return dt.datetime.fromtimestamp(ts, dt.UTC)


if __name__ == "__main__":
    sys.exit(main())
