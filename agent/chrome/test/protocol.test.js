// Unit tests of the extension's pure protocol module: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import * as P from "../protocol.js";

const WATCH_GRID = {
  type: "watch", mode: "grid", width: 400, height: 225, interval_ms: 2000, quality: 55,
  encoding: "jpeg", tabs: "active", viewers: ["M. de Vries"],
};
const WELCOME = {
  type: "welcome", protocol: 1, session: "s1", display_name: "Anna B.", heartbeat_s: 20,
  max_frame_bytes: 1048576,
};
const JPEG = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);

test("frame header is 24 big-endian bytes in the documented layout", () => {
  const h = P.buildFrameHeader({
    kind: 2, encoding: 1, width: 640, height: 360, seq: 0x01020304, capturedAt: 1795414408927,
  });
  assert.equal(h.length, 24);
  assert.deepEqual([...h.slice(0, 4)], [..."KBF1"].map((c) => c.charCodeAt(0)));
  assert.deepEqual([...h.slice(4, 8)], [1, 2, 1, 0]);
  assert.deepEqual([...h.slice(8, 12)], [0x02, 0x80, 0x01, 0x68]);
  assert.deepEqual([...h.slice(12, 16)], [1, 2, 3, 4]);
  const ts = new DataView(h.buffer).getBigUint64(16);
  assert.equal(ts, 1795414408927n);
});

test("frame seq wraps at 2**32 and the image follows the header unchanged", () => {
  const f = P.buildFrame(
    { kind: 1, encoding: 1, width: 1, height: 1, seq: 2 ** 32 + 5, capturedAt: 0 }, JPEG,
  );
  assert.equal(new DataView(f.buffer).getUint32(12), 5);
  assert.deepEqual([...f.slice(24)], [...JPEG]);
});

test("frame header rejects values the server would refuse", () => {
  const ok = { kind: 1, encoding: 1, width: 10, height: 10, seq: 0, capturedAt: 0 };
  assert.throws(() => P.buildFrameHeader({ ...ok, kind: 3 }), /kind/);
  assert.throws(() => P.buildFrameHeader({ ...ok, encoding: 0 }), /encoding/);
  assert.throws(() => P.buildFrameHeader({ ...ok, width: 7681 }), /width/);
  assert.throws(() => P.buildFrameHeader({ ...ok, height: 0 }), /height/);
  assert.throws(() => P.buildFrameHeader({ ...ok, capturedAt: -1 }), /capturedAt/);
});

test("hello names the chromebook device and the protocol version", () => {
  const hello = P.buildHello({ token: "T", account: "a@s.nl", deviceId: "d1", os: "CrOS", agentVersion: "0.1.0" });
  assert.deepEqual(hello, {
    type: "hello", protocol: 1, token: "T", account: "a@s.nl",
    device: { id: "d1", kind: "chromebook", os: "CrOS", agent: "klasblik-chrome/0.1.0" },
  });
  assert.throws(() => P.buildHello({ token: "T", account: "", deviceId: "d1" }), /account/);
  assert.throws(() => P.buildHello({ token: "T", account: "a", deviceId: "x".repeat(129) }), /device id/);
});

test("server messages are validated with the documented error codes", () => {
  assert.throws(() => P.parseServerMessage("{"), { code: "invalid_json" });
  assert.throws(() => P.parseServerMessage("[]"), { code: "invalid_json" });
  assert.throws(() => P.parseServerMessage('{"type":"nope"}'), { code: "unknown_type" });
  assert.throws(() => P.parseServerMessage(JSON.stringify({ ...WATCH_GRID, mode: "spy" })), { code: "invalid_format" });
  assert.throws(() => P.parseServerMessage(JSON.stringify({ ...WATCH_GRID, viewers: [1] })), { code: "invalid_format" });
  const { quality, ...noQuality } = WATCH_GRID;
  assert.equal(quality, 55);
  assert.throws(() => P.parseServerMessage(JSON.stringify(noQuality)), /missing field: quality/);
  const extra = P.parseServerMessage(JSON.stringify({ ...WATCH_GRID, future: 1 }));
  assert.equal(extra.mode, "grid");
});

test("watch handling: off captures nothing, grid and focus pick the frame kind", () => {
  const s = new P.AgentSession();
  assert.equal(s.capturing, false);
  assert.equal(s.captureWait(0), Infinity);
  const ev = s.receive(JSON.stringify(WELCOME));
  assert.equal(ev.kind, "welcome");
  assert.equal(ev.heartbeatS, 20);
  s.receive(JSON.stringify(WATCH_GRID));
  assert.equal(s.capturing, true);
  const shot = { key: "a", encoding: 1, width: 400, height: 225, image: JPEG, capturedAt: 5 };
  const f1 = s.frameFor(shot);
  assert.equal(f1[5], P.FrameKind.GRID);
  s.receive(JSON.stringify({ ...WATCH_GRID, mode: "focus", width: 1280, height: 720, interval_ms: 500 }));
  const f2 = s.frameFor(shot);
  assert.ok(f2, "a new watch sends the same screen again");
  assert.equal(f2[5], P.FrameKind.FOCUS);
  assert.equal(new DataView(f2.buffer).getUint32(12), 1, "seq counts frames");
  s.receive(JSON.stringify({ ...WATCH_GRID, mode: "off", tabs: "none", viewers: [] }));
  assert.equal(s.capturing, false);
  assert.equal(s.frameFor({ ...shot, key: "b" }), null);
  assert.equal(s.tabsFor([{ title: "x", url: "https://x", active: true, windowId: 1 }]), null);
});

test("no frame when the screen did not change", () => {
  const s = new P.AgentSession();
  s.receive(JSON.stringify(WATCH_GRID));
  const shot = { key: "same", encoding: 1, width: 4, height: 4, image: JPEG, capturedAt: 1 };
  assert.ok(s.frameFor(shot));
  assert.equal(s.frameFor(shot), null);
  assert.ok(s.frameFor({ ...shot, key: "other" }));
});

test("frames over the server's max_frame_bytes are not sent", () => {
  const s = new P.AgentSession();
  s.receive(JSON.stringify({ ...WELCOME, max_frame_bytes: 30 }));
  s.receive(JSON.stringify(WATCH_GRID));
  const big = new Uint8Array(40);
  big.set(JPEG);
  assert.equal(s.frameFor({ key: "k", encoding: 1, width: 4, height: 4, image: big, capturedAt: 1 }), null);
});

test("capture rate: at most one per interval and never faster than 2 per second", () => {
  const s = new P.AgentSession();
  s.receive(JSON.stringify({ ...WATCH_GRID, interval_ms: 2000 }));
  assert.equal(s.captureWait(10000), 0);
  s.markCaptured(10000);
  assert.equal(s.captureWait(10500), 1500);
  assert.equal(s.captureWait(12000), 0);
  s.receive(JSON.stringify({ ...WATCH_GRID, mode: "focus", interval_ms: 100 }));
  s.markCaptured(20000);
  assert.equal(s.captureWait(20100), 400);
});

test("heartbeat interval follows welcome and never exceeds 20 s", () => {
  assert.equal(P.heartbeatSeconds({ heartbeat_s: 5 }), 5);
  assert.equal(P.heartbeatSeconds({ heartbeat_s: 60 }), 20);
  assert.equal(P.heartbeatSeconds({ heartbeat_s: 0 }), 1);
  const s = new P.AgentSession();
  assert.deepEqual(s.nextHeartbeat(), { type: "heartbeat", seq: 0 });
  assert.deepEqual(s.nextHeartbeat(), { type: "heartbeat", seq: 1 });
});

test("tabs shaping: scopes, truncation, window grouping", () => {
  const raw = [
    { title: "A", url: "https://a.example/", active: true, windowId: 1 },
    { title: "B".repeat(600), url: "https://b.example/" + "x".repeat(3000), active: false, windowId: 1 },
    { title: "C", url: "https://c.example/", active: true, windowId: 2 },
  ];
  assert.deepEqual(P.shapeTabs(raw, "none"), []);
  assert.deepEqual(P.shapeTabs(raw, "active", 2), [{ title: "C", url: "https://c.example/", active: true, window: 2 }]);
  assert.deepEqual(P.shapeTabs(raw, "active", null).map((t) => t.title), ["A"]);
  const all = P.shapeTabs(raw, "all", 1);
  assert.equal(all.length, 3);
  assert.equal(all[1].title.length, 512);
  assert.equal(all[1].url.length, 2048);
  assert.equal(all[1].active, false);
  assert.deepEqual(all.map((t) => t.window), [1, 1, 2]);
  const many = Array.from({ length: 600 }, (_, i) => ({ title: `t${i}`, url: "", active: false, windowId: 1 }));
  assert.equal(P.shapeTabs(many, "all").length, 500);
  assert.throws(() => P.shapeTabs(raw, "some"), /tab scope/);
});

test("tabs are sent only when asked and only when changed", () => {
  const s = new P.AgentSession();
  const raw = [{ title: "A", url: "https://a/", active: true, windowId: 1 }];
  assert.equal(s.tabsFor(raw), null, "not while off");
  s.receive(JSON.stringify({ ...WATCH_GRID, tabs: "none" }));
  assert.equal(s.tabsFor(raw), null, "not with tabs none");
  s.receive(JSON.stringify({ ...WATCH_GRID, tabs: "all" }));
  assert.deepEqual(s.tabsFor(raw), { type: "tabs", tabs: [{ title: "A", url: "https://a/", active: true, window: 1 }] });
  assert.equal(s.tabsFor(raw), null, "unchanged list is not resent");
  assert.ok(s.tabsFor([...raw, { title: "B", url: "https://b/", active: false, windowId: 1 }]));
});

test("fitSize keeps the aspect ratio and never upscales", () => {
  assert.deepEqual(P.fitSize(1920, 1080, 400, 225), { width: 400, height: 225 });
  assert.deepEqual(P.fitSize(1280, 1024, 400, 225), { width: 281, height: 225 });
  assert.deepEqual(P.fitSize(300, 200, 400, 225), { width: 300, height: 200 });
  assert.throws(() => P.fitSize(0, 10, 4, 4), /source width/);
});

test("capturable pages: web pages yes, chrome: and other extensions no", () => {
  assert.equal(P.isCapturableUrl("https://example.org/"), true);
  assert.equal(P.isCapturableUrl("http://127.0.0.1:8000/x"), true);
  assert.equal(P.isCapturableUrl("chrome://settings"), false);
  assert.equal(P.isCapturableUrl("chrome-extension://abc/page.html"), false);
  assert.equal(P.isCapturableUrl(undefined), false);
});

test("reconnect backoff doubles from 1 s to 60 s with ±50 % jitter, an hour after 4003", () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 5, 6, 10].map((a) => P.reconnectDelay(a, 1006, mid)), [1000, 2000, 4000, 32000, 60000, 60000]);
  assert.equal(P.reconnectDelay(0, 1006, () => 0), 500);
  assert.equal(P.reconnectDelay(0, 1006, () => 0.999999), 1500);
  assert.equal(P.reconnectDelay(0, 4003, mid), 60 * 60 * 1000);
});

test("badge shows while watched and names the viewers", () => {
  const s = new P.AgentSession();
  assert.equal(P.badgeFor(s.watch, true).text, "");
  s.receive(JSON.stringify({ ...WATCH_GRID, viewers: ["M. de Vries", "J. Jansen"] }));
  const on = P.badgeFor(s.watch, true);
  assert.equal(on.text, "ON");
  assert.match(on.title, /M\. de Vries, J\. Jansen/);
  assert.equal(P.badgeFor(s.watch, false).text, "", "cleared when disconnected");
});

test("managed config: both fields needed, wss only (ws on loopback)", () => {
  assert.throws(() => P.checkConfig({}), /serverUrl and enrollmentToken missing/);
  assert.throws(() => P.checkConfig({ serverUrl: "wss://k.example/ws/agent" }), /enrollmentToken missing/);
  assert.throws(() => P.checkConfig({ serverUrl: "ws://k.example/ws/agent", enrollmentToken: "t" }), /wss:\/\//);
  assert.throws(() => P.checkConfig({ serverUrl: "nope", enrollmentToken: "t" }), /not a URL/);
  assert.equal(P.checkConfig({ serverUrl: "wss://k.example/ws/agent", enrollmentToken: "t" }).serverUrl, "wss://k.example/ws/agent");
  assert.equal(P.checkConfig({ serverUrl: "ws://127.0.0.1:8080/ws/agent", enrollmentToken: "t" }).enrollmentToken, "t");
});

test("hello says role tabs only beside the desktop agent", () => {
  const full = P.buildHello({ token: "T", account: "a@s.nl", deviceId: "d1", agentVersion: "0.1.0" });
  assert.equal("role" in full, false);
  const tabs = P.buildHello({ token: "T", account: "a@s.nl", deviceId: "pc-0042", agentVersion: "0.1.0", role: "tabs" });
  assert.equal(tabs.role, "tabs");
  assert.equal(tabs.device.id, "pc-0042");
  const other = P.buildHello({ token: "T", account: "a@s.nl", deviceId: "d1", role: "screen" });
  assert.equal("role" in other, false);
});

test("a challenge before the welcome is reported once; after it, refused", () => {
  const s = new P.AgentSession();
  assert.deepEqual(s.receive(JSON.stringify({ type: "challenge", nonce: "n1" })), { kind: "challenge", nonce: "n1" });
  assert.throws(() => s.receive(JSON.stringify({ type: "challenge", nonce: "n2" })), /challenge outside/);
  assert.throws(() => s.receive(JSON.stringify({ type: "challenge" })), /missing field: nonce/);
});

test("hello carries the device key and the identity only when given", () => {
  const plain = P.buildHello({ token: "t", account: "a@s.example", deviceId: "d" });
  assert.equal(plain.device.key, undefined);
  assert.equal(plain.identity, undefined);
  const full = P.buildHello({
    token: "t", account: "a@s.example", deviceId: "d", deviceKey: "KEY", identity: { kind: "google", token: "x.y.z" },
  });
  assert.equal(full.device.key, "KEY");
  assert.deepEqual(full.identity, { kind: "google", token: "x.y.z" });
  assert.deepEqual([...P.proofPayload("n", "d")], [...new TextEncoder().encode("klasblik-device-proof/1\nn\nd")]);
  assert.equal(P.base64url(new Uint8Array([251, 255, 191])), "-_-_");
});
