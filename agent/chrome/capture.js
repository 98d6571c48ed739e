// Capture the visible tab, scale it down and encode it, all inside the service worker
// (createImageBitmap + OffscreenCanvas; no offscreen document needed).

import { NOT_CAPTURABLE, encodingForMime, fitSize, isCapturableUrl } from "./protocol.js";
import { isPrivateUrl } from "./private.js";
import { palettePng, PALETTE_COLOURS } from "./palette.js";
import { GRID_COLOURS, GRID_WHOLE_GAP_MS, TILES_ENCODING } from "./tiles.js";

async function activeTab() {
  const [focused] = await chrome.tabs.query({ active: true, lastFocusedWindow: true });
  if (focused) return focused;
  const [any] = await chrome.tabs.query({ active: true });
  return any || null;
}

/** The last frames' times in ms (captureVisibleTab, reading its picture, scaling and
 * comparing, coding), for bench/chrome_bytes.py through the worker's global scope. */
export const captureTimes = [];
globalThis.klasblikCaptureTimes = captureTimes;

function noteTimes(times) {
  captureTimes.push(times);
  if (captureTimes.length > 200) captureTimes.shift();
}

/** After this many captures in a row identical to the last picture sent, a page is quiet:
 * it is then looked at with a JPEG capture first (cheaper for the browser than the PNG the
 * changed tiles need, and its bytes are the same while the page is), and captured as PNG
 * again only when that probe changed. */
export const QUIET_CAPTURES = 3;
const PROBE = { format: "jpeg", quality: 50 };

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Capture what the student sees for `watch`. Returns {error, code} when the page cannot be
 * captured, else {key, encoding, width, height, image, capturedAt}; `key` identifies the
 * captured content, so an unchanged screen can be skipped before any scaling. With a
 * `delta` (tiles.js DeltaState; only when the server takes delta frames) the tab is
 * captured as PNG (exact rows, for finding a scroll), scaled in JS with its rows following
 * the page, compared with the last picture sent, and only its changed tiles and scroll
 * copies go out (encoding 4).
 */
export async function captureActiveTab(watch, lastKey = null, privatePages = [], delta = null) {
  const tab = await activeTab();
  if (!tab) return { error: "no open tab to capture", code: "no_display" };
  // A private page is never captured: checked before captureVisibleTab is called.
  if (isPrivateUrl(tab.url || tab.pendingUrl, privatePages)) return { private: true };
  if (!isCapturableUrl(tab.url || tab.pendingUrl)) return { error: NOT_CAPTURABLE, code: "page" };
  let dataUrl;
  const capturedAt = Date.now();
  const t0 = performance.now();
  if (delta && lastKey !== null && delta.quiet >= QUIET_CAPTURES) {
    let probe;
    try {
      probe = await chrome.tabs.captureVisibleTab(tab.windowId, PROBE);
    } catch (err) {
      console.debug("klasblik: captureVisibleTab refused", err && err.message);
      return { error: NOT_CAPTURABLE, code: "page" };
    }
    const probeKey = await sha256Hex(probe);
    if (probeKey === delta.probeKey) {
      noteTimes({ kind: "probe", capture: performance.now() - t0, decode: 0, scale: 0, code: 0 });
      return { key: lastKey, unchanged: true };
    }
    delta.probeKey = probeKey; // changed (or the first probe): a proper look, below
  }
  try {
    const format = delta ? { format: "png" } : { format: "jpeg", quality: 92 };
    dataUrl = await chrome.tabs.captureVisibleTab(tab.windowId, format);
  } catch (err) {
    // chrome:, other extensions' pages, the Web Store, PDF viewer, a tab still loading...
    console.debug("klasblik: captureVisibleTab refused", err && err.message);
    return { error: NOT_CAPTURABLE, code: "page" };
  }
  const t1 = performance.now();
  const key = await sha256Hex(dataUrl);
  if (key === lastKey) {
    if (delta) delta.quiet += 1;
    noteTimes({ kind: "same", capture: t1 - t0, decode: 0, scale: 0, code: performance.now() - t1 });
    return { key, unchanged: true };
  }
  if (delta) {
    delta.quiet = 0;
    delta.probeKey = null;
  }
  const blob = await (await fetch(dataUrl)).blob();
  const bitmap = await createImageBitmap(blob);
  let t2 = performance.now();
  let t3 = t2;
  const times = (kind) => noteTimes({ kind, capture: t1 - t0, decode: t2 - t1, scale: t3 - t2, code: performance.now() - t3 });
  try {
    const { width, height } = fitSize(bitmap.width, bitmap.height, watch.width, watch.height);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d");
    if (delta) {
      const full = new OffscreenCanvas(bitmap.width, bitmap.height).getContext("2d", { willReadFrequently: true });
      full.drawImage(bitmap, 0, 0);
      const src = full.getImageData(0, 0, bitmap.width, bitmap.height).data;
      t2 = performance.now();
      const picture = delta.scale(src, bitmap.width, bitmap.height, width, height);
      t3 = performance.now();
      const grid = watch.mode === "grid";
      const colours = grid ? GRID_COLOURS : PALETTE_COLOURS;
      const wholeGapMs = grid ? GRID_WHOLE_GAP_MS : 0;
      const coded = await delta.encode(picture, watch.quality / 100, capturedAt, { wholeGapMs, colours });
      if (coded === null) {
        times("none");
        return { key, unchanged: true }; // the same, or a whole one held back
      }
      if (coded.delta) {
        times("delta");
        return { key, encoding: TILES_ENCODING, width, height, image: coded.image, capturedAt };
      }
      // a whole picture of screen content: a palette PNG, as the desktop agent's key frames
      const png = await palettePng(picture.data, width, height, colours);
      if (png) {
        times("whole");
        return { key, encoding: encodingForMime("image/png"), width, height, image: png, capturedAt };
      }
      ctx.putImageData(new ImageData(picture.data, width, height), 0, 0);
    } else {
      ctx.imageSmoothingQuality = "medium";
      ctx.drawImage(bitmap, 0, 0, width, height);
      t3 = performance.now();
    }
    const wanted = watch.encoding === "webp" ? "image/webp" : "image/jpeg";
    const out = await canvas.convertToBlob({ type: wanted, quality: watch.quality / 100 });
    const encoding = encodingForMime(out.type);
    if (encoding === null) throw new Error(`encoder produced ${out.type}`);
    times("whole");
    return { key, encoding, width, height, image: new Uint8Array(await out.arrayBuffer()), capturedAt };
  } finally {
    bitmap.close();
  }
}
