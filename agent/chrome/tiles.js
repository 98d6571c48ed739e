// Changed regions only, for the Chromebook extension: the same rules as the desktop
// agent's agent/klasblik/agent/tiles.py (docs/protocol.md, "Delta frames"), with scroll
// copies and palette PNGs. Pure where it can be: everything here takes arrays and returns
// arrays, except the JPEG of a photographic tile (OffscreenCanvas: the service worker has
// no DOM), which DeltaState takes as a function.
//
// A scrolled page is a copy only if its rows moved by whole rows of the sent picture. The
// tab (1280x720, say) is scaled to the grid (400x225) by 3.2, so a scroll by 60 px would
// move the picture by 18.75 rows, and a browser's drawImage gives rows that match nothing.
// So the extension scales in JS (scale.js), an area average whose row boundaries are fixed
// to the page, not to the tab: a scroll found in the captured rows (the tab is captured as
// PNG: its rows are exact) moves those boundaries with the page, and the sent picture's
// rows then equal the last one's rows, moved, for any scroll by whole captured pixels.

import { PALETTE_COLOURS, palettePng } from "./palette.js";
import { findScroll, findShift, nextPhase, rowHashes, scalePicture, scrollColumns } from "./scale.js";

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
/** Most colours of a palette PNG in the grid: a 400 × 225 thumbnail of text looks the same
 * with 8 as with 32 (docs/performance.md, "Chromebook") and costs 40 % fewer bytes. A
 * close-up has palette.js's PALETTE_COLOURS (32), as the desktop agent. */
export const GRID_COLOURS = 8;
export const TILES_ENCODING = 4;
const GAP = 2;

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

export const COPY = 0;
export const JPEG = 1;
export const PNG = 3;

/** A copy tile: the w × h area at (x, y) is the area at `source` of the picture as it
 * stood before this frame. */
export function copyTile(x, y, width, height, [sx, sy]) {
  const data = new Uint8Array(4);
  const view = new DataView(data.buffer);
  view.setUint16(0, sx);
  view.setUint16(2, sy);
  return { x, y, width, height, encoding: COPY, data };
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


/** The w × h area at (x, y) of an RGBA picture `width` wide, as its own RGBA bytes. */
export function cropRgba(rgba, width, x, y, w, h) {
  const out = new Uint8ClampedArray(w * h * 4);
  for (let r = 0; r < h; r += 1) {
    const from = ((y + r) * width + x) * 4;
    out.set(rgba.subarray(from, from + w * 4), r * w * 4);
  }
  return out;
}

/** JPEG of an RGBA area by the browser's encoder (the service worker's OffscreenCanvas). */
export async function canvasJpeg(rgba, width, height, quality) {
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext("2d").putImageData(new ImageData(rgba, width, height), 0, 0);
  const blob = await canvas.convertToBlob({ type: "image/jpeg", quality });
  return new Uint8Array(await blob.arrayBuffer());
}

/** {encoding, data} of an RGBA area: a palette PNG of screen content, else JPEG. */
export async function encodeArea(rgba, width, height, quality, jpeg = canvasJpeg, colours = PALETTE_COLOURS) {
  const png = await palettePng(rgba, width, height, colours);
  if (png) return { encoding: PNG, data: png };
  return { encoding: JPEG, data: await jpeg(rgba, width, height, quality) };
}

/**
 * changedRects of a scrolled picture, in three parts with their own tile rows: above the
 * copied band [y0, y1), the band itself (the right edge beside it, anything that changed
 * in it), below it. So the one new row at the top (part of a sent row: scale.js) is a
 * strip one row high, and the rows that came in at the bottom are those rows, not whole
 * 16-row tiles around them; and no changed tile overlaps the copy but those that changed
 * within it, so the delta's tiles cover no more than the picture.
 */
export function changedRectsAround(previous, current, width, height, y0, y1) {
  const out = [];
  for (const [top, bottom] of [[0, y0], [y0, y1], [y1, height]]) {
    if (bottom <= top) continue;
    const part = (a) => a.subarray(top * width, bottom * width);
    for (const [x, y, w, h] of changedRects(part(previous), part(current), width, bottom - top)) {
      out.push([x, y + top, w, h]);
    }
  }
  return out;
}

/**
 * The last picture sent, to code the next one against. `scale` makes the picture to send
 * from a captured one (its rows following the page, see scale.js); `encode` returns null
 * (nothing changed), or {delta: true, image} (a delta body), or {delta: false} (send the
 * picture whole: the first one, a size change, the key interval, most of it changed);
 * `commit` once the frame went out. `jpeg(rgba, w, h, quality)` codes a photographic tile.
 */
export class DeltaState {
  constructor({ jpeg = canvasJpeg } = {}) {
    this.jpeg = jpeg;
    this.last = null; // {pixels: Uint32Array, width, height, source}
    this.lastKeyAt = -Infinity;
    this.pending = null;
    this.deltaAt = null; // when the last delta went out, while no key frame followed it
    this.deferred = false; // the last encode held a whole picture back (wholeGapMs)
    this.quiet = 0; // captures in a row identical to the last one sent (capture.js)
    this.probeKey = null; // the key of the last cheap probe of a quiet page
  }

  /** Deltas went out since the last key frame and none for `afterMs`: a key frame is due. */
  settled(now, afterMs = SETTLE_MS) {
    return this.deltaAt !== null && now - this.deltaAt >= afterMs;
  }

  reset() {
    this.last = null;
    this.pending = null;
    this.quiet = 0;
    this.probeKey = null;
  }

  /**
   * The picture to send (width × height) of a captured RGBA picture (srcWidth ×
   * srcHeight): {data (RGBA), width, height, source}. When the captured rows moved against
   * the last picture sent (a scroll), the sent rows move with them.
   */
  scale(src, srcWidth, srcHeight, width, height) {
    const pixels = new Uint32Array(src.buffer, src.byteOffset, srcWidth * srcHeight);
    const hashes = rowHashes(pixels, srcWidth, srcHeight, scrollColumns(srcWidth, width));
    const before = this.last && this.last.source;
    let phase = srcHeight;
    let shift = null;
    if (before && before.width === srcWidth && before.height === srcHeight
      && this.last.width === width && this.last.height === height) {
      phase = before.phase;
      shift = findShift(before.hashes, hashes);
      if (shift) phase = nextPhase(phase, shift[2], srcHeight, height);
    }
    const data = scalePicture(src, srcWidth, srcHeight, width, height, phase);
    return { data, width, height, source: { hashes, width: srcWidth, height: srcHeight, phase, shift } };
  }

  /** `picture`: from scale (or any {data: RGBA, width, height}); `quality` 0..1 for JPEG
   * tiles. `wholeGapMs`: a whole picture because most of it changed comes at most this
   * long after the last whole one; before that, null with `deferred` set. `colours`: most
   * colours of a palette tile (GRID_COLOURS in the grid). */
  async encode(picture, quality, now, { wholeGapMs = 0, colours = PALETTE_COLOURS } = {}) {
    this.deferred = false;
    const { data, width, height } = picture;
    const pixels = new Uint32Array(data.buffer, data.byteOffset, width * height);
    const last = this.last;
    const due = now - this.lastKeyAt >= KEY_INTERVAL_MS;
    const pending = { pixels, width, height, source: picture.source || null, at: now };
    if (last && last.width === width && last.height === height && !due) {
      const tiles = [];
      let base = last.pixels;
      const scroll = findScroll(last.pixels, pixels, width, height);
      let rects;
      if (scroll) { // a scrolled page: a copy within the picture
        const [y0, y1, dy, cols] = scroll;
        // whole tiles across: the changed tiles at the right edge then do not overlap it
        const bandWidth = cols === width ? width : cols - (cols % TILE);
        base = last.pixels.slice();
        for (let y = y0; y < y1; y += 1) {
          base.set(last.pixels.subarray((y + dy) * width, (y + dy) * width + bandWidth), y * width);
        }
        tiles.push(copyTile(0, y0, bandWidth, y1 - y0, [0, y0 + dy]));
        rects = changedRectsAround(base, pixels, width, height, y0, y1);
      } else {
        rects = changedRects(base, pixels, width, height);
      }
      if (rects.length === 0 && tiles.length === 0) return null;
      const area = rects.reduce((n, [, , w, h]) => n + w * h, 0);
      const copied = tiles.reduce((n, t) => n + t.width * t.height, 0);
      if (area < KEY_AREA * width * height && area + copied <= width * height) {
        for (const [x, y, w, h] of rects) {
          const coded = await encodeArea(cropRgba(data, width, x, y, w, h), w, h, quality, this.jpeg, colours);
          tiles.push({ x, y, width: w, height: h, ...coded });
        }
        this.pending = { ...pending, key: false };
        return { delta: true, image: buildTilesBody(tiles) };
      }
      if (now - this.lastKeyAt < wholeGapMs) {
        this.deferred = true; // most of it changed: whole, but not yet
        return null;
      }
    }
    this.pending = { ...pending, key: true };
    return { delta: false };
  }

  commit() {
    const p = this.pending;
    if (!p) return;
    this.last = { pixels: p.pixels, width: p.width, height: p.height, source: p.source };
    if (p.key) {
      this.lastKeyAt = p.at;
      this.deltaAt = null;
    } else {
      this.deltaAt = p.at;
    }
    this.pending = null;
  }
}
