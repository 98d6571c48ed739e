// The Klasblik Chromebook agent: the extension's service worker. It does the I/O
// (chrome.* APIs, the WebSocket, timers); what to send and when is decided by the pure
// protocol module next to it.

import * as P from "./protocol.js";
import { captureActiveTab } from "./capture.js";
import { DeltaState } from "./tiles.js";
import { blankPrivateTabs } from "./private.js";
import { msg } from "./i18n.js";

const VERSION = chrome.runtime.getManifest().version;
const ALARM = "klasblik-keepalive";

const state = {
  config: null, // {serverUrl, enrollmentToken} from chrome.storage.managed
  configError: null,
  account: null,
  deviceId: null,
  // "tabs" when the desktop agent runs on this PC (its native host answered)
  role: "full",
  deviceKey: null, // {pair, publicKey}: see deviceKey()
  ws: null,
  session: null,
  connected: false, // welcome received
  attempt: 0,
  reconnectTimer: null,
  nextAttemptAt: 0,
  heartbeatTimer: null,
  captureTimer: null,
  tabsTimer: null,
  capturing: false,
  privatePage: null, // the session whose active tab is a private page (nothing captured)
  lastCaptureError: null,
  lastError: null,
  lastClose: null,
  framesSent: 0,
  starting: null,
};

// ------------------------------------------------------------------ status and badge

function publicStatus() {
  const watch = state.session ? state.session.watch : P.WATCH_OFF;
  return {
    configured: Boolean(state.config),
    configError: state.configError,
    server: state.config ? state.config.serverUrl : null,
    account: state.account,
    connected: state.connected,
    displayName: state.session && state.session.welcome ? state.session.welcome.display_name : null,
    identity: state.session && state.session.welcome ? state.session.welcome.identity || null : null,
    mode: state.connected ? watch.mode : "off",
    viewers: state.connected ? [...watch.viewers] : [],
    tabs: state.connected ? watch.tabs : "none",
    lastError: state.lastError,
    lastCaptureError: state.lastCaptureError,
    lastClose: state.lastClose,
    nextAttemptAt: state.nextAttemptAt || null,
    framesSent: state.framesSent,
    updatedAt: Date.now(),
  };
}

// For the options page (and for tests, through the worker's global scope).
globalThis.klasblikStatus = publicStatus;

async function publish() {
  const status = publicStatus();
  const badge = P.badgeFor(state.session ? state.session.watch : P.WATCH_OFF, state.connected, msg);
  await Promise.all([
    chrome.action.setBadgeText({ text: badge.text }),
    badge.text ? chrome.action.setBadgeBackgroundColor({ color: badge.color }) : null,
    chrome.action.setTitle({ title: badge.title }),
    chrome.storage.session.set({ status }),
  ]).catch((err) => console.warn("klasblik: status not published", err));
}

// ------------------------------------------------------------------ configuration

async function testHooks() {
  // Test builds only: the tests copy this folder and add test-hooks.json (see
  // tests/chrome/extension.py). The extension as shipped has no such file.
  try {
    const res = await fetch(chrome.runtime.getURL("test-hooks.json"));
    if (!res.ok) return null;
    const hooks = await res.json();
    return hooks && hooks.testOnly === true ? hooks : null;
  } catch {
    return null;
  }
}

async function readAccount() {
  const hooks = await testHooks();
  if (hooks && typeof hooks.account === "string") return hooks.account;
  const info = await chrome.identity.getProfileUserInfo({ accountStatus: "ANY" });
  return info && info.email ? info.email : null;
}

async function readDeviceId() {
  const ent = chrome.enterprise && chrome.enterprise.deviceAttributes;
  if (ent && ent.getDirectoryDeviceId) {
    try {
      const id = await ent.getDirectoryDeviceId();
      if (id) return id.slice(0, 128);
    } catch {
      // not a managed ChromeOS device: fall through to a random id kept by the profile
    }
  }
  const { deviceId } = await chrome.storage.local.get("deviceId");
  if (deviceId) return deviceId;
  const fresh = crypto.randomUUID();
  await chrome.storage.local.set({ deviceId: fresh });
  return fresh;
}

// ------------------------------------------------------------------ identity

// The device key: an ECDSA P-256 pair made once by WebCrypto with a non-extractable private
// key, kept as a CryptoKey in IndexedDB (which can hold keys that cannot be read out).
// Only the public half leaves the device; the server challenges it at each connection.
const KEY_DB = "klasblik";
const KEY_STORE = "keys";

function keyDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(KEY_DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(KEY_STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function keyOp(db, mode, op) {
  return new Promise((resolve, reject) => {
    const req = op(db.transaction(KEY_STORE, mode).objectStore(KEY_STORE));
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function deviceKey() {
  if (state.deviceKey) return state.deviceKey;
  const db = await keyDb();
  let pair = await keyOp(db, "readonly", (store) => store.get("device"));
  if (!pair) {
    pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"]);
    await keyOp(db, "readwrite", (store) => store.put(pair, "device"));
  }
  db.close();
  const spki = await crypto.subtle.exportKey("spki", pair.publicKey); // the public half only
  state.deviceKey = { pair, publicKey: P.base64url(spki) };
  return state.deviceKey;
}

async function signChallenge(nonce) {
  const key = await deviceKey();
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    key.pair.privateKey,
    P.proofPayload(nonce, state.deviceId),
  );
  return P.base64url(signature); // WebCrypto gives the raw r||s the server expects
}

// A Google ID token for the profile's managed account, got without user action: Google's
// authorization endpoint with prompt=none through chrome.identity.launchWebAuthFlow
// (interactive: false), for the OAuth client IT names in the managed configuration
// (googleClientId). The test build takes it from test-hooks.json instead.
async function identityToken() {
  const hooks = await testHooks();
  if (hooks && typeof hooks.identityToken === "string") return { kind: "google", token: hooks.identityToken };
  const clientId = state.config && state.config.googleClientId;
  if (!clientId || !chrome.identity.launchWebAuthFlow) return null;
  const nonce = crypto.randomUUID();
  const url = new URL("https://accounts.google.com/o/oauth2/v2/auth");
  url.search = new URLSearchParams({
    client_id: clientId,
    response_type: "id_token",
    scope: "openid email",
    redirect_uri: chrome.identity.getRedirectURL(),
    nonce,
    prompt: "none",
    login_hint: state.account || "",
  }).toString();
  try {
    const answer = await chrome.identity.launchWebAuthFlow({ url: url.href, interactive: false });
    const token = new URLSearchParams(new URL(answer).hash.slice(1)).get("id_token");
    return token ? { kind: "google", token } : null;
  } catch (err) {
    state.lastError = `no identity token: ${err.message}`;
    return null;
  }
}

function osName() {
  const ua = navigator.userAgentData;
  if (ua && ua.platform) return ua.platform;
  return navigator.platform || "unknown";
}

async function loadConfig() {
  const managed = await chrome.storage.managed.get(["serverUrl", "enrollmentToken", "googleClientId"]);
  try {
    state.config = P.checkConfig(managed);
    state.configError = null;
  } catch (err) {
    state.config = null;
    state.configError = err.message;
  }
  state.account = await readAccount();
  if (state.config && !state.account) {
    state.configError = "no account: sign in to Chrome with the school account";
  }
  const desktop = await askDesktopAgent();
  if (desktop) {
    state.deviceId = desktop;
    state.role = "tabs";
  } else {
    state.role = "full";
    state.deviceId = state.deviceId || (await readDeviceId());
  }
}

// The Klasblik desktop agent on this PC, if any, through its native messaging host
// (klasblik/agent/native_host.py): its device id, so that the server makes one tile of
// both (screen from the agent, tabs from here). No host: null, and this extension works
// on its own as before.
async function askDesktopAgent() {
  if (!chrome.runtime.sendNativeMessage) return null;
  try {
    const answer = await chrome.runtime.sendNativeMessage("nl.klasblik.agent", { get: "device" });
    const id = answer && answer.device_id;
    return typeof id === "string" && id.length >= 1 && id.length <= 128 ? id : null;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ connection

function send(data) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(typeof data === "string" || data instanceof Uint8Array ? data : JSON.stringify(data));
  return true;
}

function stopTimers() {
  clearInterval(state.heartbeatTimer);
  clearTimeout(state.captureTimer);
  clearTimeout(state.tabsTimer);
  state.heartbeatTimer = state.captureTimer = state.tabsTimer = null;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.nextAttemptAt = 0;
  if (!state.config || !state.account) return;
  let ws;
  try {
    ws = new WebSocket(state.config.serverUrl);
  } catch (err) {
    state.lastError = `cannot connect: ${err.message}`;
    scheduleReconnect(null);
    return;
  }
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  state.session = new P.AgentSession();
  const session = state.session;
  session.delta = new DeltaState(); // the last picture sent on this connection
  ws.onopen = async () => {
    const [identity, key] = await Promise.all([
      identityToken(),
      deviceKey().catch((err) => {
        state.lastError = `no device key: ${err.message}`;
        return null;
      }),
    ]);
    if (state.ws !== ws) return;
    send(P.buildHello({
      token: state.config.enrollmentToken,
      account: state.account,
      deviceId: state.deviceId,
      os: osName(),
      agentVersion: VERSION,
      role: state.role,
      deviceKey: key ? key.publicKey : null,
      identity,
      tiles: true,
    }));
  };
  ws.onmessage = (ev) => {
    if (state.ws !== ws || typeof ev.data !== "string") return;
    let event;
    try {
      event = session.receive(ev.data);
    } catch (err) {
      state.lastError = `bad message from server: ${err.message}`;
      console.warn("klasblik:", state.lastError);
      return;
    }
    onEvent(event);
  };
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;
    state.ws = null;
    state.session = null; // a capture still in flight sees this and stops
    state.connected = false;
    stopTimers();
    state.lastClose = { code: ev.code, reason: ev.reason, at: Date.now() };
    scheduleReconnect(ev.code);
    publish();
  };
  ws.onerror = () => {
    state.lastError = "connection error";
  };
}

function onEvent(event) {
  if (event.kind === "challenge") {
    signChallenge(event.nonce)
      .then((signature) => send(P.buildProof(event.nonce, signature)))
      .catch((err) => {
        state.lastError = `cannot answer the challenge: ${err.message}`;
      });
    return;
  }
  if (event.kind === "welcome") {
    state.connected = true;
    state.attempt = 0;
    state.lastError = null;
    chrome.storage.local.remove("forbiddenUntil");
    clearInterval(state.heartbeatTimer);
    const session = state.session;
    state.heartbeatTimer = setInterval(() => send(session.nextHeartbeat()), event.heartbeatS * 1000);
  } else if (event.kind === "watch") {
    state.lastCaptureError = null;
    state.session.delta.reset(); // a new watch (a new viewer raises its key): a whole picture first
    clearTimeout(state.captureTimer);
    state.captureTimer = null;
    if (event.watch.mode !== "off") {
      if (state.role !== "tabs") scheduleCapture(0); // beside the desktop agent: tabs only
      scheduleTabs(0);
    }
  } else if (event.kind === "error") {
    state.lastError = `${event.error.code}: ${event.error.message}`;
  }
  publish();
}

function scheduleReconnect(code) {
  clearTimeout(state.reconnectTimer);
  const delay = P.reconnectDelay(state.attempt, code);
  state.attempt += 1;
  state.nextAttemptAt = Date.now() + delay;
  if (code === P.CloseCode.FORBIDDEN) chrome.storage.local.set({ forbiddenUntil: state.nextAttemptAt });
  state.reconnectTimer = setTimeout(connect, delay);
}

// ------------------------------------------------------------------ capture and tabs

function scheduleCapture(delay) {
  clearTimeout(state.captureTimer);
  state.captureTimer = setTimeout(captureTick, delay);
}

async function captureTick() {
  state.captureTimer = null;
  const session = state.session;
  if (!session || !session.capturing || state.capturing) return;
  const wait = session.captureWait(Date.now());
  if (wait > 0) return scheduleCapture(wait);
  state.capturing = true;
  const watch = session.watch;
  session.markCaptured(Date.now());
  try {
    const privatePages = (session.welcome && session.welcome.private_pages) || [];
    const delta = session.welcome && session.welcome.tiles === true ? session.delta : null;
    if (delta && watch.mode === "grid" && delta.settled(Date.now())) {
      // the page settled after deltas: once more whole, for the stored thumbnail
      session.lastFrameKey = null;
      delta.reset();
    }
    const shot = await captureActiveTab(watch, session.lastFrameKey, privatePages, delta);
    // The watch may have changed (or gone off) while capturing: then drop this shot.
    if (session !== state.session || session.watch !== watch) return;
    if (shot.private) {
      if (state.privatePage !== session) send({ type: "private_page", on: true });
      state.privatePage = session;
      session.lastFrameKey = null; // the next ordinary page is sent even if unchanged
      session.delta.reset(); // and as a whole picture
      return;
    }
    if (state.privatePage === session) {
      send({ type: "private_page", on: false });
      state.privatePage = null;
    }
    if (shot.unchanged) return; // same screen as the last frame: a heartbeat is enough
    if (shot.error) {
      if (shot.error !== state.lastCaptureError) {
        state.lastCaptureError = shot.error;
        send(P.buildCaptureError(shot.error, shot.code));
        publish();
      }
      return;
    }
    const frame = session.frameFor(shot);
    if (frame && send(frame)) {
      session.delta.commit();
      state.framesSent += 1;
      state.lastCaptureError = null;
    }
  } catch (err) {
    console.warn("klasblik: capture failed", err);
  } finally {
    state.capturing = false;
    if (session === state.session && session.capturing) scheduleCapture(session.captureWait(Date.now()));
  }
}

function scheduleTabs(delay = 300) {
  if (!state.session || !state.session.capturing) return;
  clearTimeout(state.tabsTimer);
  state.tabsTimer = setTimeout(sendTabs, delay);
}

async function sendTabs() {
  state.tabsTimer = null;
  const session = state.session;
  if (!session || !session.capturing) return;
  const [tabs, focused] = await Promise.all([
    chrome.tabs.query({}),
    chrome.windows.getLastFocused().catch(() => null),
  ]);
  if (session !== state.session) return;
  const privatePages = (session.welcome && session.welcome.private_pages) || [];
  const msg = session.tabsFor(blankPrivateTabs(tabs, privatePages), focused ? focused.id : null);
  if (msg) send(msg);
}

for (const ev of [chrome.tabs.onCreated, chrome.tabs.onUpdated, chrome.tabs.onRemoved,
  chrome.tabs.onActivated, chrome.tabs.onReplaced, chrome.tabs.onMoved, chrome.tabs.onAttached,
  chrome.windows.onFocusChanged]) {
  ev.addListener(() => scheduleTabs());
}

// ------------------------------------------------------------------ start and keepalive

async function start() {
  if (state.starting) return state.starting;
  state.starting = (async () => {
    await loadConfig();
    const { forbiddenUntil = 0 } = await chrome.storage.local.get("forbiddenUntil");
    if (state.config && state.account && !state.ws && !state.reconnectTimer) {
      const wait = forbiddenUntil - Date.now();
      if (wait > 0) {
        state.nextAttemptAt = forbiddenUntil;
        state.reconnectTimer = setTimeout(connect, wait);
      } else {
        connect();
      }
    }
    await publish();
  })().finally(() => {
    state.starting = null;
  });
  return state.starting;
}

function restart() {
  const ws = state.ws;
  state.ws = null;
  state.connected = false;
  state.session = null;
  stopTimers();
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  state.attempt = 0;
  if (ws) ws.close(1000, "configuration changed");
  return start();
}

chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "managed") restart();
});

chrome.alarms.onAlarm.addListener((alarm) => {
  // Backstop: if Chrome stopped the worker, this wakes it and start() reconnects.
  if (alarm.name === ALARM) start();
});

chrome.runtime.onInstalled.addListener(() => chrome.alarms.create(ALARM, { periodInMinutes: 1 }));
chrome.runtime.onStartup.addListener(() => start());
chrome.alarms.get(ALARM).then((a) => a || chrome.alarms.create(ALARM, { periodInMinutes: 1 }));
start();
