// The dashboard's WebSocket client with a scripted socket in place of the browser's:
// commands and results, frames, reconnecting with re-subscription, and stopping for good
// after a `closed` with code `forbidden`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { CommandError, LiveConnection } from "../dashboard/live.js";

class FakeSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static made = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeSocket.CONNECTING;
    this.sent = [];
    this.listeners = {};
    FakeSocket.made.push(this);
    setTimeout(() => {
      this.readyState = FakeSocket.OPEN;
      this.emit("open", {});
    }, 1);
  }

  addEventListener(name, fn) {
    (this.listeners[name] ??= []).push(fn);
  }

  emit(name, event) {
    for (const fn of this.listeners[name] ?? []) fn(event);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
  }

  reply(msg) {
    this.emit("message", { data: typeof msg === "string" ? msg : JSON.stringify(msg) });
  }

  close() {
    if (this.readyState === FakeSocket.CLOSED) return;
    this.readyState = FakeSocket.CLOSED;
    setTimeout(() => this.emit("close", { code: 1006 }), 1);
  }
}

globalThis.WebSocket = FakeSocket;
const FAST = { firstMs: 5, maxMs: 20, jitter: 0 };
// Scaled like every timeout of the Python tests (tests/support/timing.py), which pass it on.
const TIMEOUT_FACTOR = Number(process.env.KLASBLIK_TEST_TIMEOUT_FACTOR || 1);
const until = async (check, ms = 2000 * TIMEOUT_FACTOR) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

function viewerFrame(studentId, seq) {
  const ref = Buffer.from(String(studentId), "ascii");
  const head = Buffer.alloc(24);
  head.write("KBF1", 0, "ascii");
  head.writeUInt8(1, 4);
  head.writeUInt8(1, 5);
  head.writeUInt8(1, 6);
  head.writeUInt16BE(400, 8);
  head.writeUInt16BE(225, 10);
  head.writeUInt32BE(seq, 12);
  const prefix = Buffer.alloc(6);
  prefix.write("KBV1", 0, "ascii");
  prefix.writeUInt16BE(ref.length, 4);
  const bytes = Buffer.concat([prefix, ref, head, Buffer.from([0xff, 0xd8, 0xff, 0xdb])]);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

test("commands resolve with results, refusals reject with their code, frames are parsed", async () => {
  FakeSocket.made = [];
  const frames = [];
  const events = [];
  let opened = 0;
  const live = new LiveConnection(
    { onOpen: () => { opened += 1; }, onFrame: (f) => frames.push(f), onEvent: (e) => events.push(e) },
    "ws://127.0.0.1:1/ws/dashboard",
    FAST,
  );
  live.start();
  await until(() => opened === 1);
  const socket = FakeSocket.made[0];
  const answer = live.command("subscribe", { class_id: 7 });
  assert.deepEqual(socket.sent[0], { type: "subscribe", id: 1, class_id: 7 });
  socket.reply({ type: "result", id: 1, success: true, result: { students: [] } });
  assert.deepEqual(await answer, { students: [] });

  const refused = live.command("focus", { student_id: 3 });
  socket.reply({ type: "result", id: 2, success: false, error: { code: "forbidden", message: "no" } });
  await assert.rejects(refused, (err) => err instanceof CommandError && err.code === "forbidden");

  socket.reply({ type: "status", student_id: 12, state: { online: false } });
  socket.reply("not json");
  socket.emit("message", { data: viewerFrame(12, 99) });
  socket.emit("message", { data: new ArrayBuffer(3) });
  assert.deepEqual(events, [{ type: "status", student_id: 12, state: { online: false } }]);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].studentId, 12);
  assert.equal(frames[0].seq, 99);
  live.stop();
});

test("a lost connection rejects pending commands, reconnects and calls onOpen again", async () => {
  FakeSocket.made = [];
  const states = [];
  let opened = 0;
  const live = new LiveConnection(
    { onOpen: () => { opened += 1; }, onState: (s) => states.push(s) },
    "ws://127.0.0.1:1/ws/dashboard",
    FAST,
  );
  live.start();
  await until(() => opened === 1);
  const pending = live.command("ping");
  FakeSocket.made[0].close();
  await assert.rejects(pending, (err) => err.code === "disconnected");
  await until(() => opened === 2);
  assert.equal(FakeSocket.made.length, 2);
  assert.ok(states.includes("waiting"), states.join(","));
  live.stop();
  await new Promise((r) => setTimeout(r, 50)); // idle: past the 20 ms back-off, no reconnect
  assert.equal(FakeSocket.made.length, 2, "no reconnect after stop()");
});

test("after closed with code forbidden it does not reconnect", async () => {
  FakeSocket.made = [];
  const states = [];
  let opened = 0;
  const live = new LiveConnection(
    { onOpen: () => { opened += 1; }, onState: (s, d) => states.push([s, d?.code]) },
    "ws://127.0.0.1:1/ws/dashboard",
    FAST,
  );
  live.start();
  await until(() => opened === 1);
  FakeSocket.made[0].reply({ type: "closed", error: { code: "forbidden", message: "revoked" } });
  await new Promise((r) => setTimeout(r, 80)); // idle: past several back-offs, no reconnect
  assert.equal(FakeSocket.made.length, 1);
  assert.deepEqual(states.at(-1), ["stopped", "forbidden"]);
});

test("after closed with too_slow it reconnects", async () => {
  FakeSocket.made = [];
  let opened = 0;
  const live = new LiveConnection({ onOpen: () => { opened += 1; } }, "ws://127.0.0.1:1/ws/dashboard", FAST);
  live.start();
  await until(() => opened === 1);
  FakeSocket.made[0].reply({ type: "closed", error: { code: "too_slow", message: "slow" } });
  FakeSocket.made[0].close();
  await until(() => opened === 2);
  live.stop();
});

test("beforeReconnect returning false gives up", async () => {
  FakeSocket.made = [];
  let asked = 0;
  let opened = 0;
  const live = new LiveConnection(
    { onOpen: () => { opened += 1; }, beforeReconnect: async () => { asked += 1; return false; } },
    "ws://127.0.0.1:1/ws/dashboard",
    FAST,
  );
  live.start();
  await until(() => opened === 1);
  FakeSocket.made[0].close();
  await until(() => asked === 1);
  await new Promise((r) => setTimeout(r, 50)); // idle: past the 20 ms back-off, no reconnect
  assert.equal(FakeSocket.made.length, 1);
  live.stop();
});
