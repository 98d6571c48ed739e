// Palette PNGs of screen content (text, lines, flat areas), written in JS: the browser's
// own PNG encoder (OffscreenCanvas.convertToBlob) only writes true-colour PNGs, larger
// for text. The desktop agent's rules (tiles.encode_rect): at most `most` colours
// (PALETTE_COLOURS, or GRID_COLOURS in the grid) exactly; up to SCREEN_COLOURS colours,
// or FLAT_COLOURS main colours covering FLAT_SHARE of the area (text with smoothed edges),
// as `most` colours picked spread out (pickColours; the desktop agent uses Pillow's
// octree), every other colour drawn as the nearest of those; anything else (photos,
// video) is not screen content (null: JPEG). Deflate is the platform's CompressionStream
// (zlib format, what PNG's IDAT holds).

export const PALETTE_COLOURS = 32;
export const SCREEN_COLOURS = 256;
export const FLAT_COLOURS = 128;
export const FLAT_SHARE = 0.95;
/** More distinct colours than this: a photo, without counting further. */
const MANY_COLOURS = 4096;

/**
 * {palette, index} for an RGBA area (Uint8Array / Uint8ClampedArray, alpha ignored):
 * `palette` the colours (Uint32, RGBA in memory order), `index` one palette index a pixel;
 * null when the area is not screen content.
 */
export function paletteOf(rgba, most = PALETTE_COLOURS) {
  const pixels = new Uint32Array(rgba.buffer, rgba.byteOffset, rgba.byteLength >> 2);
  const n = pixels.length;
  const counts = new Map();
  let run = pixels[0];
  let length = 0;
  for (let i = 0; i < n; i += 1) {
    const v = pixels[i] | 0xff000000; // opaque: a capture has no transparency
    if (v === run) {
      length += 1;
      continue;
    }
    if (length) counts.set(run, (counts.get(run) || 0) + length);
    if (counts.size > MANY_COLOURS) return null;
    run = v;
    length = 1;
  }
  if (length) counts.set(run, (counts.get(run) || 0) + length);
  let colours = [...counts.entries()];
  if (colours.length > most) {
    colours.sort((a, b) => b[1] - a[1]);
    if (colours.length > SCREEN_COLOURS) {
      const main = colours.slice(0, FLAT_COLOURS).reduce((sum, [, c]) => sum + c, 0);
      if (main < FLAT_SHARE * n) return null;
    }
    colours = pickColours(colours, most);
  }
  const palette = Uint32Array.from(colours, ([v]) => v >>> 0);
  const slot = new Map();
  palette.forEach((v, i) => slot.set(v | 0, i));
  const index = new Uint8Array(n);
  let last = -1;
  let lastSlot = 0;
  for (let i = 0; i < n; i += 1) {
    const v = pixels[i] | 0xff000000;
    if (v !== last) {
      let s = slot.get(v);
      if (s === undefined) {
        s = nearest(palette, v);
        slot.set(v, s);
      }
      last = v;
      lastSlot = s;
    }
    index[i] = lastSlot;
  }
  return { palette, index };
}

/**
 * `most` of `colours` ([value, count], most used first) that stand for all of them: the
 * most used one, then each time the colour that is used most times its (squared) distance
 * to the nearest one picked so far. Text keeps its ink and background and the greys
 * between, spread out, not the many nearly-white greys of its smoothed edges.
 */
export function pickColours(colours, most) {
  const n = colours.length;
  const gap = new Float64Array(n).fill(Infinity);
  const picked = [];
  let next = 0;
  while (picked.length < most) {
    picked.push(colours[next]);
    const v = colours[next][0];
    gap[next] = 0;
    let best = -1;
    let bestScore = 0;
    for (let i = 0; i < n; i += 1) {
      if (gap[i] === 0) continue;
      const d = distance(v, colours[i][0]);
      if (d < gap[i]) gap[i] = d;
      const score = gap[i] * colours[i][1];
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    if (best < 0) break;
    next = best;
  }
  return picked;
}

function distance(a, b) {
  const dr = (a & 255) - (b & 255);
  const dg = ((a >>> 8) & 255) - ((b >>> 8) & 255);
  const db = ((a >>> 16) & 255) - ((b >>> 16) & 255);
  return 2 * dr * dr + 4 * dg * dg + 3 * db * db;
}

function nearest(palette, v) {
  const r = v & 255;
  const g = (v >>> 8) & 255;
  const b = (v >>> 16) & 255;
  let best = 0;
  let bestD = Infinity;
  for (let i = 0; i < palette.length; i += 1) {
    const p = palette[i];
    const dr = (p & 255) - r;
    const dg = ((p >>> 8) & 255) - g;
    const db = ((p >>> 16) & 255) - b;
    const d = 2 * dr * dr + 4 * dg * dg + 3 * db * db;
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO 3309, what PNG chunks carry) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) c = CRC_TABLE[(c ^ bytes[i]) & 255] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** zlib-format deflate of `bytes` (CompressionStream: MV3 workers and node have it). */
export async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i += 1) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Bits per index for `colours` palette entries: 1, 2, 4 or 8. */
export function bitDepth(colours) {
  if (colours <= 2) return 1;
  if (colours <= 4) return 2;
  if (colours <= 16) return 4;
  return 8;
}

/** The rows PNG filters and deflates: a filter byte (0, none) then the packed indices. */
export function packRows(index, width, height, depth) {
  const stride = Math.ceil((width * depth) / 8);
  const out = new Uint8Array(height * (stride + 1));
  const per = 8 / depth;
  for (let y = 0; y < height; y += 1) {
    const row = y * (stride + 1) + 1;
    const src = y * width;
    if (depth === 8) {
      out.set(index.subarray(src, src + width), row);
      continue;
    }
    for (let x = 0; x < width; x += 1) {
      const shift = 8 - depth * ((x % per) + 1);
      out[row + Math.floor(x / per)] |= index[src + x] << shift;
    }
  }
  return out;
}

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/** An indexed-colour PNG of `palette` (Uint32 RGBA) and `index` (width × height). */
export async function writePalettePng(palette, index, width, height) {
  if (palette.length < 1 || palette.length > 256) throw new RangeError("a PNG palette has 1 to 256 colours");
  if (index.length !== width * height) throw new RangeError("one palette index a pixel");
  const depth = bitDepth(palette.length);
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header.set([depth, 3, 0, 0, 0], 8); // bit depth, colour type 3 (palette), deflate, filters, no interlace
  const plte = new Uint8Array(palette.length * 3);
  palette.forEach((v, i) => plte.set([v & 255, (v >>> 8) & 255, (v >>> 16) & 255], i * 3));
  const idat = await deflate(packRows(index, width, height, depth));
  const parts = [SIGNATURE, chunk("IHDR", header), chunk("PLTE", plte), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A palette PNG of an RGBA area when it is screen content, else null. */
export async function palettePng(rgba, width, height, most = PALETTE_COLOURS) {
  const coded = paletteOf(rgba, most);
  return coded && writePalettePng(coded.palette, coded.index, width, height);
}
