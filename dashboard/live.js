// The dashboard's WebSocket: commands with ids and their results, server events, viewer
// frames, and reconnecting with backoff. Knows the protocol's envelope, not the page.
import { parseViewerFrame } from "./frames.js";

/** A command the server answered with success: false; `code` is the protocol code. */
export class CommandError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "CommandError";
    this.code = code;
  }
}

export const BACKOFF = Object.freeze({ firstMs: 1000, maxMs: 30000, jitter: 0.5 });
const PING_EVERY_MS = 25000;

/** Delay before reconnect attempt `attempt` (0-based): doubling, capped, ±jitter. */
export function backoffDelay(attempt, random = Math.random, policy = BACKOFF) {
  const base = Math.min(policy.maxMs, policy.firstMs * 2 ** Math.min(attempt, 16));
  const spread = base * policy.jitter;
  return Math.round(base - spread + random() * 2 * spread);
}

/** Same-origin ws:// or wss:// URL for `path`. */
export function socketUrl(path, location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export class LiveConnection {
  /**
   * @param {object} handlers
   *   onOpen(): called after each (re)connect; re-subscribe here.
   *   onEvent(msg): status, tabs, notice and other server events.
   *   onFrame(frame): a parsed viewer frame (see frames.js).
   *   onState(state, detail): "connecting" | "open" | "waiting" {seconds} | "stopped" {code, message}.
   *   beforeReconnect(): async; return false to give up (e.g. the session is gone).
   */
  constructor(handlers, url = socketUrl("/ws/dashboard"), policy = BACKOFF) {
    this.url = url;
    this.policy = policy;
    this.handlers = handlers;
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map();
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Close for good: no reconnect. */
  stop(code = "stopped", message = "") {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(1000);
    this.handlers.onState?.("stopped", { code, message });
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Send a command; resolves with its `result`, rejects with CommandError. */
  command(type, fields = {}) {
    if (!this.isOpen) return Promise.reject(new CommandError("disconnected", "not connected"));
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...fields, type, id }));
    });
  }

  connect() {
    this.handlers.onState?.("connecting");
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.handlers.onState?.("open");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        this.command("ping").catch(() => {});
      }, PING_EVERY_MS);
      this.handlers.onOpen?.();
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.socket) this.receive(event.data);
    });
    socket.addEventListener("close", () => {
      if (socket === this.socket) this.closed();
    });
  }

  receive(data) {
    if (typeof data !== "string") {
      let frame;
      try {
        frame = parseViewerFrame(data);
      } catch (err) {
        console.warn("dropped a viewer frame:", err.message);
        return;
      }
      this.handlers.onFrame?.(frame);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn("dropped a message that is not JSON");
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    if (msg.type === "result") {
      const waiter = this.pending.get(msg.id);
      if (!waiter) return;
      this.pending.delete(msg.id);
      if (msg.success) {
        this.attempt = 0;
        waiter.resolve(msg.result ?? {});
      } else {
        const error = msg.error || {};
        waiter.reject(new CommandError(error.code || "unknown", error.message));
      }
      return;
    }
    if (msg.type === "closed") {
      const error = msg.error || {};
      if (error.code === "forbidden" || error.code === "session_ended") {
        this.stop(error.code, error.message || "");
        return;
      }
      this.lastClose = error;
    }
    this.handlers.onEvent?.(msg);
  }

  closed() {
    clearInterval(this.pingTimer);
    for (const waiter of this.pending.values()) {
      waiter.reject(new CommandError("disconnected", "connection closed"));
    }
    this.pending.clear();
    this.socket = null;
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, Math.random, this.policy);
    this.attempt += 1;
    this.handlers.onState?.("waiting", { seconds: Math.max(1, Math.round(delay / 1000)) });
    this.retryTimer = setTimeout(async () => {
      if (this.stopped) return;
      let go = true;
      try {
        if (this.handlers.beforeReconnect) go = await this.handlers.beforeReconnect();
      } catch {
        go = true;
      }
      if (this.stopped) return;
      if (go) this.connect();
      else this.stop("gave_up", "");
    }, delay);
  }
}
