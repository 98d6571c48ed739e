// Capture the visible tab, scale it down and encode it, all inside the service worker
// (createImageBitmap + OffscreenCanvas; no offscreen document needed).

import { NOT_CAPTURABLE, encodingForMime, fitSize, isCapturableUrl } from "./protocol.js";
import { isPrivateUrl } from "./private.js";
import { GRID_WHOLE_GAP_MS, TILES_ENCODING } from "./tiles.js";

async function activeTab() {
  const [focused] = await chrome.tabs.query({ active: true, lastFocusedWindow: true });
  if (focused) return focused;
  const [any] = await chrome.tabs.query({ active: true });
  return any || null;
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Capture what the student sees for `watch`. Returns {error, code} when the page cannot be
 * captured, else {key, encoding, width, height, image, capturedAt}; `key` identifies the
 * captured content, so an unchanged screen can be skipped before any scaling. With a
 * `delta` (tiles.js DeltaState; only when the server takes delta frames) the picture is
 * compared with the last one sent and only its changed tiles go out (encoding 4).
 */
export async function captureActiveTab(watch, lastKey = null, privatePages = [], delta = null) {
  const tab = await activeTab();
  if (!tab) return { error: "no open tab to capture", code: "no_display" };
  // A private page is never captured: checked before captureVisibleTab is called.
  if (isPrivateUrl(tab.url || tab.pendingUrl, privatePages)) return { private: true };
  if (!isCapturableUrl(tab.url || tab.pendingUrl)) return { error: NOT_CAPTURABLE, code: "page" };
  let dataUrl;
  const capturedAt = Date.now();
  try {
    dataUrl = await chrome.tabs.captureVisibleTab(tab.windowId, { format: "jpeg", quality: 92 });
  } catch (err) {
    // chrome:, other extensions' pages, the Web Store, PDF viewer, a tab still loading...
    console.debug("klasblik: captureVisibleTab refused", err && err.message);
    return { error: NOT_CAPTURABLE, code: "page" };
  }
  const key = await sha256Hex(dataUrl);
  if (key === lastKey) return { key, unchanged: true };
  const blob = await (await fetch(dataUrl)).blob();
  const bitmap = await createImageBitmap(blob);
  try {
    const { width, height } = fitSize(bitmap.width, bitmap.height, watch.width, watch.height);
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingQuality = "medium";
    ctx.drawImage(bitmap, 0, 0, width, height);
    if (delta) {
      const gap = watch.mode === "grid" ? GRID_WHOLE_GAP_MS : 0;
      const coded = await delta.encode(ctx, width, height, watch.quality / 100, capturedAt, gap);
      if (coded === null) return { key, unchanged: true }; // the same, or a whole one held back
      if (coded.delta) return { key, encoding: TILES_ENCODING, width, height, image: coded.image, capturedAt };
    }
    const wanted = watch.encoding === "webp" ? "image/webp" : "image/jpeg";
    const out = await canvas.convertToBlob({ type: wanted, quality: watch.quality / 100 });
    const encoding = encodingForMime(out.type);
    if (encoding === null) throw new Error(`encoder produced ${out.type}`);
    return { key, encoding, width, height, image: new Uint8Array(await out.arrayBuffer()), capturedAt };
  } finally {
    bitmap.close();
  }
}
