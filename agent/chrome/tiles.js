// Changed regions only, for the Chromebook extension: the same rules as the desktop
// agent's agent/klasblik/agent/tiles.py (docs/protocol.md, "Delta frames"). Pure where it
// can be: changedRects, isScreenContent and buildTilesBody take arrays and return arrays;
// DeltaState.encode uses OffscreenCanvas (the service worker has no DOM).

export const TILE = 16;
export const KEY_INTERVAL_MS = 30_000;
/** A picture unchanged this long after deltas is sent once more whole (grid): the stored
 * thumbnail, only ever a key frame, then shows the page as it stayed. */
export const SETTLE_MS = 10_000;
/** In the grid, a whole picture because most of it changed goes out at most this often
 * (the grid's rate before changed tiles), so the grid never costs more bytes than then;
 * deltas go out at every interval, and asked-for key frames are never held back. */
export const GRID_WHOLE_GAP_MS = 2_000;
export const KEY_AREA = 0.6;
export const TILES_ENCODING = 4;
const GAP = 2;
const SCREEN_COLOURS = 256;

/**
 * Rectangles [x, y, w, h] covering every pixel that differs between two RGBA pictures of
 * `width` × `height` (Uint32Array views, one element a pixel): changed 16 × 16 tiles,
 * merged into runs along each tile row (bridging up to two unchanged tiles) and runs of the
 * same columns down the rows.
 */
export function changedRects(previous, current, width, height, tile = TILE) {
  const cols = Math.ceil(width / tile);
  const rows = Math.ceil(height / tile);
  const out = [];
  let open = new Map(); // "c0,c1" -> [c0, c1, r0, n]
  for (let r = 0; r < rows; r += 1) {
    const changed = new Uint8Array(cols);
    const y1 = Math.min(height, (r + 1) * tile);
    for (let y = r * tile; y < y1; y += 1) {
      const base = y * width;
      for (let c = 0; c < cols; c += 1) {
        if (changed[c]) continue;
        const x1 = Math.min(width, (c + 1) * tile);
        for (let x = c * tile; x < x1; x += 1) {
          if (previous[base + x] !== current[base + x]) {
            changed[c] = 1;
            break;
          }
        }
      }
    }
    const runs = [];
    for (let c = 0; c < cols; ) {
      if (!changed[c]) {
        c += 1;
        continue;
      }
      const start = c;
      let end = c + 1;
      c += 1;
      while (c < cols && changed.subarray(c, c + GAP + 1).some((v) => v)) {
        if (changed[c]) end = c + 1;
        c += 1;
      }
      runs.push([start, end]);
    }
    const still = new Map();
    for (const [c0, c1] of runs) {
      const key = `${c0},${c1}`;
      const span = open.get(key);
      if (span) {
        open.delete(key);
        span[3] += 1;
        still.set(key, span);
      } else {
        still.set(key, [c0, c1, r, 1]);
      }
    }
    for (const span of open.values()) out.push(rect(span, tile, width, height));
    open = still;
  }
  for (const span of open.values()) out.push(rect(span, tile, width, height));
  return out;
}

function rect([c0, c1, r0, n], tile, width, height) {
  const x = c0 * tile;
  const y = r0 * tile;
  return [x, y, Math.min(c1 * tile, width) - x, Math.min((r0 + n) * tile, height) - y];
}

/** Whether an area (RGBA bytes) has at most 256 colours: text, lines, flat areas. */
export function isScreenContent(rgba) {
  const pixels = new Uint32Array(rgba.buffer, rgba.byteOffset, rgba.byteLength >> 2);
  const seen = new Set();
  for (let i = 0; i < pixels.length; i += 1) {
    seen.add(pixels[i]);
    if (seen.size > SCREEN_COLOURS) return false;
  }
  return true;
}

/** The body of a delta frame: tile count, then per tile its 14-byte record and bytes. */
export function buildTilesBody(tiles) {
  const size = 2 + tiles.reduce((n, t) => n + 14 + t.data.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint16(0, tiles.length);
  let i = 2;
  for (const t of tiles) {
    view.setUint16(i, t.x);
    view.setUint16(i + 2, t.y);
    view.setUint16(i + 4, t.width);
    view.setUint16(i + 6, t.height);
    view.setUint8(i + 8, t.encoding);
    view.setUint8(i + 9, 0);
    view.setUint32(i + 10, t.data.length);
    out.set(t.data, i + 14);
    i += 14 + t.data.length;
  }
  return out;
}

async function encodeArea(imageData, quality) {
  const canvas = new OffscreenCanvas(imageData.width, imageData.height);
  canvas.getContext("2d").putImageData(imageData, 0, 0);
  const png = isScreenContent(imageData.data);
  const blob = await canvas.convertToBlob(png ? { type: "image/png" } : { type: "image/jpeg", quality });
  return { encoding: png ? 3 : 1, data: new Uint8Array(await blob.arrayBuffer()) };
}

/**
 * The last picture sent, to code the next one against. `encode` returns null (nothing
 * changed), or {delta: true, image} (a delta body), or {delta: false} (send a whole
 * picture: the first one, a size change, the key interval, most of it changed); `commit`
 * once the frame went out.
 */
export class DeltaState {
  constructor() {
    this.last = null; // {pixels: Uint32Array, width, height}
    this.lastKeyAt = -Infinity;
    this.pending = null;
    this.deltaAt = null; // when the last delta went out, while no key frame followed it
    this.deferred = false; // the last encode held a whole picture back (wholeGapMs)
  }

  /** Deltas went out since the last key frame and none for `afterMs`: a key frame is due. */
  settled(now, afterMs = SETTLE_MS) {
    return this.deltaAt !== null && now - this.deltaAt >= afterMs;
  }

  reset() {
    this.last = null;
    this.pending = null;
  }

  /** `wholeGapMs`: a whole picture because most of it changed comes at most this long
   * after the last whole one; before that, null with `deferred` set. */
  async encode(ctx, width, height, quality, now, wholeGapMs = 0) {
    this.deferred = false;
    const data = ctx.getImageData(0, 0, width, height).data;
    const pixels = new Uint32Array(data.buffer, data.byteOffset, data.byteLength >> 2);
    const last = this.last;
    const due = now - this.lastKeyAt >= KEY_INTERVAL_MS;
    if (last && last.width === width && last.height === height && !due) {
      const rects = changedRects(last.pixels, pixels, width, height);
      if (rects.length === 0) return null;
      const area = rects.reduce((n, [, , w, h]) => n + w * h, 0);
      if (area < KEY_AREA * width * height) {
        const tiles = [];
        for (const [x, y, w, h] of rects) {
          const coded = await encodeArea(ctx.getImageData(x, y, w, h), quality);
          tiles.push({ x, y, width: w, height: h, ...coded });
        }
        this.pending = { pixels, width, height, key: false, at: now };
        return { delta: true, image: buildTilesBody(tiles) };
      }
      if (now - this.lastKeyAt < wholeGapMs) {
        this.deferred = true; // most of it changed: whole, but not yet
        return null;
      }
    }
    this.pending = { pixels, width, height, key: true, at: now };
    return { delta: false };
  }

  commit() {
    const p = this.pending;
    if (!p) return;
    this.last = { pixels: p.pixels, width: p.width, height: p.height };
    if (p.key) {
      this.lastKeyAt = p.at;
      this.deltaAt = null;
    } else {
      this.deltaAt = p.at;
    }
    this.pending = null;
  }
}
