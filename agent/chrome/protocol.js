// The agent side of the Klasblik wire protocol, version 1 (docs/protocol.md), as a pure
// module: no chrome.* calls, no sockets, no clocks. The service worker does the I/O and
// asks this module what to send; node's test runner checks it (agent/chrome/test/).

export const PROTOCOL_VERSION = 1;
export const AGENT_NAME = "klasblik-chrome";
export const FRAME_MAGIC = "KBF1";
export const FRAME_HEADER_SIZE = 24;
export const MAX_TABS = 500;
export const MAX_TITLE_CHARS = 512;
export const MAX_URL_CHARS = 2048;
export const MAX_HEARTBEAT_S = 20; // Chrome keeps an MV3 worker alive only while it talks.
export const BACKOFF_MIN_MS = 1000;
export const BACKOFF_MAX_MS = 60000;
export const FORBIDDEN_WAIT_MS = 60 * 60 * 1000;
export const NOT_CAPTURABLE = "page cannot be captured";

export const FrameKind = Object.freeze({ GRID: 1, FOCUS: 2 });
export const Encoding = Object.freeze({ JPEG: 1, WEBP: 2, PNG: 3, TILES: 4 });
export const ENCODING_MIME = Object.freeze({ 1: "image/jpeg", 2: "image/webp", 3: "image/png" });
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  AUTH_FAILED: 4001,
  AUTH_TIMEOUT: 4002,
  FORBIDDEN: 4003,
  UNSUPPORTED_VERSION: 4004,
  TOO_SLOW: 4008,
  REPLACED: 4009,
  ACCESS_REVOKED: 4010,
});

const WATCH_MODES = ["off", "grid", "focus"];
const TAB_SCOPES = ["none", "active", "all"];
const WATCH_ENCODINGS = ["jpeg", "webp"];

/** The watch in force before the server has said anything: send nothing. */
export const WATCH_OFF = Object.freeze({
  mode: "off", width: 0, height: 0, interval_ms: 0, quality: 0,
  encoding: "jpeg", tabs: "none", viewers: Object.freeze([]), key: 0,
});

/** A message from the server that breaks the protocol; `code` as in docs/protocol.md. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

function isInt(v) {
  return typeof v === "number" && Number.isInteger(v);
}

function requireField(msg, name, check, expected) {
  if (!(name in msg)) {
    throw new ProtocolError("invalid_format", `${msg.type}: missing field: ${name}`);
  }
  if (!check(msg[name])) {
    throw new ProtocolError("invalid_format", `${msg.type}: field ${name} must be ${expected}`);
  }
}

const SERVER_SCHEMAS = {
  welcome: [
    ["protocol", isInt, "an integer"],
    ["session", (v) => typeof v === "string", "a string"],
    ["display_name", (v) => typeof v === "string", "a string"],
    ["heartbeat_s", isInt, "an integer"],
    ["max_frame_bytes", isInt, "an integer"],
  ],
  watch: [
    ["mode", (v) => WATCH_MODES.includes(v), "one of off, grid, focus"],
    ["width", (v) => isInt(v) && v >= 0 && v <= 7680, "an integer from 0 to 7680"],
    ["height", (v) => isInt(v) && v >= 0 && v <= 4320, "an integer from 0 to 4320"],
    ["interval_ms", (v) => isInt(v) && v >= 0, "a non-negative integer"],
    ["quality", (v) => isInt(v) && v >= 1 && v <= 100, "an integer from 1 to 100"],
    ["encoding", (v) => WATCH_ENCODINGS.includes(v), "one of jpeg, webp"],
    ["tabs", (v) => TAB_SCOPES.includes(v), "one of none, active, all"],
    ["viewers", (v) => Array.isArray(v) && v.every((s) => typeof s === "string"), "a list of strings"],
  ],
  error: [["error", (v) => v !== null && typeof v === "object" && !Array.isArray(v), "an object"]],
  challenge: [["nonce", (v) => typeof v === "string" && v.length > 0 && v.length <= 256, "a string"]],
};

/** Parse and validate one text message from the server; unknown extra fields are kept. */
export function parseServerMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    throw new ProtocolError("invalid_json", `not valid JSON: ${err.message}`);
  }
  if (msg === null || typeof msg !== "object" || Array.isArray(msg)) {
    throw new ProtocolError("invalid_json", "message must be a JSON object");
  }
  if (typeof msg.type !== "string") {
    throw new ProtocolError("invalid_format", "missing field: type");
  }
  const schema = SERVER_SCHEMAS[msg.type];
  if (!schema) {
    throw new ProtocolError("unknown_type", `unknown message type: ${JSON.stringify(msg.type)}`);
  }
  for (const [name, check, expected] of schema) requireField(msg, name, check, expected);
  return msg;
}

/** A watch message reduced to the fields the agent acts on (a frozen copy). */
export function normaliseWatch(msg) {
  const watch = {};
  for (const key of Object.keys(WATCH_OFF)) watch[key] = msg[key];
  watch.viewers = Object.freeze([...msg.viewers]);
  if (watch.mode !== "off" && (watch.width < 1 || watch.height < 1)) {
    throw new ProtocolError("invalid_format", "watch: width and height must be at least 1 to capture");
  }
  return Object.freeze(watch);
}

/** The first message on every connection. */
export function buildHello({ token, account, deviceId, os, agentVersion, role, deviceKey, identity, tiles }) {
  if (typeof token !== "string" || token === "") throw new TypeError("hello needs the enrollment token");
  if (typeof account !== "string" || account === "") throw new TypeError("hello needs the signed-in account");
  if (typeof deviceId !== "string" || deviceId.length < 1 || deviceId.length > 128) {
    throw new TypeError("hello needs a device id of 1 to 128 characters");
  }
  const device = { id: deviceId, kind: "chromebook" };
  if (os) device.os = String(os).slice(0, 128);
  device.agent = `${AGENT_NAME}/${agentVersion || "0"}`.slice(0, 128);
  if (deviceKey) device.key = deviceKey; // base64url SPKI of the device's ECDSA P-256 key
  const hello = { type: "hello", protocol: PROTOCOL_VERSION, token, account, device };
  // "tabs": beside the desktop agent on this PC (same device id): tabs only, no frames
  if (role === "tabs") hello.role = "tabs";
  if (identity && typeof identity.token === "string" && identity.token) {
    hello.identity = { kind: identity.kind, token: identity.token };
  }
  // it can send delta frames (changed tiles) if the welcome says the server takes them
  if (tiles) hello.tiles = true;
  return hello;
}

export const PROOF_CONTEXT = "klasblik-device-proof/1";

/** What the device key signs to answer a challenge (the same bytes as the server's
 *  klasblik.protocol.proof_payload): context, nonce and device id, one per line. */
export function proofPayload(nonce, deviceId) {
  return new TextEncoder().encode([PROOF_CONTEXT, nonce, deviceId].join("\n"));
}

/** base64url without padding, of bytes (an ArrayBuffer or a typed array). */
export function base64url(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let text = "";
  for (const b of view) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function buildProof(nonce, signature) {
  return { type: "proof", nonce, signature };
}

export function buildHeartbeat(seq) {
  return { type: "heartbeat", seq: seq >>> 0 };
}

/** `code`: one of the protocol's capture codes (docs/protocol.md), for the teacher's words. */
export function buildCaptureError(reason, code = "other") {
  return { type: "capture_error", reason: String(reason).slice(0, 512), code };
}

/** Seconds between heartbeats: what the server asked, never over 20 s, at least 1 s. */
export function heartbeatSeconds(welcome) {
  const asked = welcome && isInt(welcome.heartbeat_s) ? welcome.heartbeat_s : MAX_HEARTBEAT_S;
  return Math.min(MAX_HEARTBEAT_S, Math.max(1, asked));
}

export function frameKindFor(mode) {
  if (mode === "grid") return FrameKind.GRID;
  if (mode === "focus") return FrameKind.FOCUS;
  throw new RangeError(`no frames in mode ${JSON.stringify(mode)}`);
}

export function encodingFor(name) {
  const code = { jpeg: Encoding.JPEG, webp: Encoding.WEBP, png: Encoding.PNG }[name];
  if (!code) throw new RangeError(`unknown encoding ${JSON.stringify(name)}`);
  return code;
}

/** Which encoding a MIME type (as an encoder reports it) is, or null. */
export function encodingForMime(mime) {
  for (const [code, m] of Object.entries(ENCODING_MIME)) if (m === mime) return Number(code);
  return null;
}

function checkRange(name, value, lo, hi) {
  if (!isInt(value) || value < lo || value > hi) {
    throw new RangeError(`frame ${name} must be an integer from ${lo} to ${hi}, got ${value}`);
  }
}

/** The 24-byte agent frame header, big-endian (docs/protocol.md, "Agent frames"). */
export function buildFrameHeader({ kind, encoding, width, height, seq, capturedAt }) {
  checkRange("kind", kind, 1, 2);
  checkRange("encoding", encoding, 1, 4); // 4: a delta frame (docs/protocol.md)
  checkRange("width", width, 1, 7680);
  checkRange("height", height, 1, 4320);
  if (!isInt(seq) || seq < 0) throw new RangeError(`frame seq must be a non-negative integer, got ${seq}`);
  if (!isInt(capturedAt) || capturedAt < 0) {
    throw new RangeError(`frame capturedAt must be milliseconds since the epoch, got ${capturedAt}`);
  }
  const buf = new Uint8Array(FRAME_HEADER_SIZE);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < 4; i++) buf[i] = FRAME_MAGIC.charCodeAt(i);
  view.setUint8(4, 1); // header version
  view.setUint8(5, kind);
  view.setUint8(6, encoding);
  view.setUint8(7, 0); // flags, reserved
  view.setUint16(8, width);
  view.setUint16(10, height);
  view.setUint32(12, seq % 2 ** 32);
  view.setBigUint64(16, BigInt(capturedAt));
  return buf;
}

/** Header + image bytes, as one binary WebSocket message. */
export function buildFrame(header, image) {
  const img = image instanceof Uint8Array ? image : new Uint8Array(image);
  const out = new Uint8Array(FRAME_HEADER_SIZE + img.length);
  out.set(buildFrameHeader(header), 0);
  out.set(img, FRAME_HEADER_SIZE);
  return out;
}

/** The largest size within max × max that keeps the aspect ratio; never upscales. */
export function fitSize(srcWidth, srcHeight, maxWidth, maxHeight) {
  for (const [n, v] of [["source width", srcWidth], ["source height", srcHeight],
    ["max width", maxWidth], ["max height", maxHeight]]) {
    if (!isInt(v) || v < 1) throw new RangeError(`${n} must be a positive integer, got ${v}`);
  }
  const scale = Math.min(1, maxWidth / srcWidth, maxHeight / srcHeight);
  return {
    width: Math.max(1, Math.min(maxWidth, Math.round(srcWidth * scale))),
    height: Math.max(1, Math.min(maxHeight, Math.round(srcHeight * scale))),
  };
}

/** Whether Chrome can capture a page at this URL with host permissions alone. */
export function isCapturableUrl(url) {
  if (typeof url !== "string") return false;
  return /^(https?|file|ftp):/i.test(url);
}

/** The tab list the protocol carries, from chrome.tabs.query({}) results and a scope. */
export function shapeTabs(rawTabs, scope, focusedWindowId = null) {
  if (!TAB_SCOPES.includes(scope)) throw new RangeError(`unknown tab scope ${JSON.stringify(scope)}`);
  if (scope === "none") return [];
  let tabs = rawTabs.filter((t) => t && typeof t === "object");
  if (scope === "active") {
    const active = tabs.filter((t) => t.active);
    const focused = active.filter((t) => t.windowId === focusedWindowId);
    tabs = (focused.length ? focused : active).slice(0, 1);
  }
  return tabs.slice(0, MAX_TABS).map((t) => ({
    title: String(t.title ?? "").slice(0, MAX_TITLE_CHARS),
    url: String(t.url ?? t.pendingUrl ?? "").slice(0, MAX_URL_CHARS),
    active: Boolean(t.active),
    window: isInt(t.windowId) ? t.windowId : 0,
    ...(t.private === true ? { private: true } : {}),
  }));
}

/** Delay before reconnect attempt `attempt` (0-based) after a close with `code`. */
export function reconnectDelay(attempt, code, random = Math.random) {
  if (code === CloseCode.FORBIDDEN) return FORBIDDEN_WAIT_MS;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt));
  return Math.round(base * (0.5 + random())); // ±50 % jitter
}

/** What the toolbar shows: a sign while watched, nothing otherwise. */
/** English words for the badge's tooltip; the worker passes chrome.i18n's instead. */
const BADGE_WORDS = Object.freeze({
  titleOff: () => "Klasblik: not watched",
  titleGrid: (names) => `Klasblik: ${names} viewing your screen`,
  titleFocus: (names) => `Klasblik: ${names} viewing your screen closely`,
  aTeacher: () => "a teacher",
});

/** `words(name, ...values)`: the text for a message name (see _locales/*\/messages.json). */
export function badgeFor(watch, connected, words = (name, ...values) => BADGE_WORDS[name](...values)) {
  if (!connected || !watch || watch.mode === "off") {
    return { text: "", color: "#00000000", title: words("titleOff") };
  }
  const names = watch.viewers.length ? watch.viewers.join(", ") : words("aTeacher");
  return { text: "ON", color: "#c62828", title: words(watch.mode === "focus" ? "titleFocus" : "titleGrid", names) };
}

/**
 * The protocol state of one connection, without I/O: feed it server messages, ask it
 * what to send. `receive` returns events: {kind: "welcome"|"challenge"|"watch"|"error", ...}.
 */
export class AgentSession {
  constructor() {
    this.welcome = null;
    this.challenged = false;
    this.watch = WATCH_OFF;
    this.heartbeatSeq = 0;
    this.frameSeq = 0;
    this.lastTabsKey = null;
    this.lastFrameKey = null;
    this.lastFrameAt = -Infinity;
  }

  receive(text) {
    const msg = parseServerMessage(text);
    if (msg.type === "welcome") {
      if (msg.protocol !== PROTOCOL_VERSION) {
        throw new ProtocolError("unsupported_version", `server speaks protocol ${msg.protocol}`);
      }
      this.welcome = msg;
      return { kind: "welcome", welcome: msg, heartbeatS: heartbeatSeconds(msg) };
    }
    if (msg.type === "challenge") {
      if (this.welcome || this.challenged) throw new ProtocolError("unexpected", "a challenge outside the hello");
      this.challenged = true;
      return { kind: "challenge", nonce: msg.nonce };
    }
    if (msg.type === "watch") {
      const previous = this.watch;
      this.watch = normaliseWatch(msg);
      // Anything changed in what is asked: the next capture and tab list go out fresh.
      if (JSON.stringify(previous) !== JSON.stringify(this.watch)) {
        this.lastFrameKey = null;
        this.lastTabsKey = null;
      }
      return { kind: "watch", watch: this.watch, previous };
    }
    return { kind: "error", error: msg.error };
  }

  get capturing() {
    return this.watch.mode !== "off";
  }

  nextHeartbeat() {
    const msg = buildHeartbeat(this.heartbeatSeq);
    this.heartbeatSeq = (this.heartbeatSeq + 1) >>> 0;
    return msg;
  }

  /** Milliseconds until the next capture may start (0: now), given the watch and the rate limit. */
  captureWait(now) {
    if (!this.capturing) return Infinity;
    const minGap = Math.max(this.watch.interval_ms, 500); // MAX_CAPTURE_VISIBLE_TAB_CALLS_PER_SECOND = 2
    return Math.max(0, this.lastFrameAt + minGap - now);
  }

  /** Record an attempt to capture at `now` (whether or not a frame went out). */
  markCaptured(now) {
    this.lastFrameAt = now;
  }

  /**
   * A frame to send for an encoded image, or null when the same image (same content key,
   * same watch) was the last one sent.
   */
  frameFor({ key, encoding, width, height, image, capturedAt }) {
    if (!this.capturing) return null;
    if (key !== null && key === this.lastFrameKey) return null;
    const frame = buildFrame(
      { kind: frameKindFor(this.watch.mode), encoding, width, height, seq: this.frameSeq, capturedAt },
      image,
    );
    if (this.welcome && frame.length > this.welcome.max_frame_bytes) return null;
    this.frameSeq = (this.frameSeq + 1) >>> 0;
    this.lastFrameKey = key;
    return frame;
  }

  /** A tabs message when the scope asks for tabs and the list changed, else null. */
  tabsFor(rawTabs, focusedWindowId = null) {
    if (!this.capturing || this.watch.tabs === "none") return null;
    const tabs = shapeTabs(rawTabs, this.watch.tabs, focusedWindowId);
    const key = JSON.stringify(tabs);
    if (key === this.lastTabsKey) return null;
    this.lastTabsKey = key;
    return { type: "tabs", tabs };
  }
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * Check the managed configuration IT pushes; return {serverUrl, enrollmentToken} or throw
 * a TypeError that says what is wrong (shown on the options page).
 */
export function checkConfig(managed) {
  const cfg = managed && typeof managed === "object" ? managed : {};
  const missing = ["serverUrl", "enrollmentToken"].filter((k) => typeof cfg[k] !== "string" || cfg[k] === "");
  if (missing.length) throw new TypeError(`not configured: ${missing.join(" and ")} missing from the managed policy`);
  let url;
  try {
    url = new URL(cfg.serverUrl);
  } catch {
    throw new TypeError(`serverUrl is not a URL: ${cfg.serverUrl}`);
  }
  if (url.protocol !== "wss:" && !(url.protocol === "ws:" && LOOPBACK.test(url.hostname))) {
    throw new TypeError("serverUrl must start with wss:// (plain ws:// only on loopback, for tests)");
  }
  const config = { serverUrl: url.href, enrollmentToken: cfg.enrollmentToken };
  if (typeof cfg.googleClientId === "string" && cfg.googleClientId) config.googleClientId = cfg.googleClientId;
  return config;
}
