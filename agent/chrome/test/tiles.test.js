// Unit tests of the extension's changed tiles: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import {
  COPY, DeltaState, GRID_WHOLE_GAP_MS, JPEG, PNG, SETTLE_MS, buildTilesBody, changedRects, copyTile, cropRgba,
  changedRectsAround, encodeArea,
} from "../tiles.js";
import { readPng } from "./png.js";

function picture(width, height, fill = 0xffffffff) {
  return new Uint32Array(width * height).fill(fill);
}

/** {data, width, height} of a picture filled with one byte value. */
function flat(width, height, fill) {
  return { data: new Uint8ClampedArray(width * height * 4).fill(fill), width, height };
}

const noJpeg = async () => assert.fail("screen content must not become JPEG");

/** A tall page of distinct rows in 4 colours: RGBA of `height` rows from `top`. */
function page(width, height, top) {
  const colours = [[255, 255, 255], [20, 20, 20], [40, 90, 200], [200, 30, 30]];
  const out = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    const d = y + top;
    for (let x = 0; x < width; x += 1) {
      const k = d % 9 < 6 ? (Math.imul(d * 7919 + (x >> 1), 2246822519) >>> 11) % 4 : 0;
      out.set([...colours[k], 255], (y * width + x) * 4);
    }
  }
  return out;
}

/** Read a delta body and paint it on `before` (RGBA) as the dashboard does: copies read the
 * picture as it stood before the frame. Returns {tiles, rgba}. */
function applyDelta(before, width, height, body, jpegs = false) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out = before.slice();
  const tiles = [];
  let i = 2;
  for (let n = 0; n < view.getUint16(0); n += 1) {
    const [x, y, w, h, encoding, reserved, length] = [view.getUint16(i), view.getUint16(i + 2),
      view.getUint16(i + 4), view.getUint16(i + 6), view.getUint8(i + 8), view.getUint8(i + 9), view.getUint32(i + 10)];
    assert.equal(reserved, 0);
    assert.ok(x + w <= width && y + h <= height, "inside the picture");
    const data = body.subarray(i + 14, i + 14 + length);
    tiles.push({ x, y, w, h, encoding, length });
    if (encoding === COPY) {
      assert.equal(length, 4);
      const [sx, sy] = [view.getUint16(i + 14), view.getUint16(i + 16)];
      for (let r = 0; r < h; r += 1) {
        out.set(before.subarray(((sy + r) * width + sx) * 4, ((sy + r) * width + sx + w) * 4), ((y + r) * width + x) * 4);
      }
    } else if (jpegs && encoding === JPEG) {
      // a stand-in JPEG: left unpainted
    } else {
      assert.equal(encoding, PNG);
      const png = readPng(data);
      assert.deepEqual([png.width, png.height], [w, h]);
      for (let r = 0; r < h; r += 1) out.set(png.rgba.subarray(r * w * 4, (r + 1) * w * 4), ((y + r) * width + x) * 4);
    }
    i += 14 + length;
  }
  assert.equal(i, body.length, "no bytes after the last tile");
  assert.ok(tiles.reduce((a, t) => a + t.w * t.h, 0) <= width * height, "no more than the picture's area");
  return { tiles, rgba: out };
}

test("equal pictures have no changed tiles; one pixel is its one tile", () => {
  const a = picture(400, 225);
  const b = a.slice();
  assert.deepEqual(changedRects(a, b, 400, 225), []);
  b[70 * 400 + 37] = 0xff0000ff;
  assert.deepEqual(changedRects(a, b, 400, 225), [[32, 64, 16, 16]]);
});

test("a changed band is one rectangle, clipped to the picture", () => {
  const a = picture(400, 225);
  const b = a.slice();
  for (let y = 200; y < 225; y++) for (let x = 0; x < 400; x++) b[y * 400 + x] = 1;
  assert.deepEqual(changedRects(a, b, 400, 225), [[0, 192, 400, 33]]);
});

test("the tiles body has the count, 14-byte records and the bytes", () => {
  const body = buildTilesBody([
    { x: 1, y: 2, width: 3, height: 4, encoding: 3, data: Uint8Array.of(9, 8) },
    { x: 0, y: 0, width: 1, height: 1, encoding: 1, data: Uint8Array.of(7) },
  ]);
  assert.deepEqual(Array.from(body.subarray(0, 18)), [0, 2, 0, 1, 0, 2, 0, 3, 0, 4, 3, 0, 0, 0, 0, 2, 9, 8]);
  assert.equal(body.length, 2 + 14 + 2 + 14 + 1);
});

test("a copy tile's record: encoding 0, 4 bytes of source x and y", () => {
  const body = buildTilesBody([copyTile(0, 16, 384, 112, [0, 109])]);
  assert.deepEqual(Array.from(body), [0, 1, 0, 0, 0, 16, 1, 128, 0, 112, 0, 0, 0, 0, 0, 4, 0, 0, 0, 109]);
});

test("around a copied band the changed rows are found in three parts, none overlapping it", () => {
  const [w, h] = [400, 225];
  const a = picture(w, h);
  const b = a.slice();
  for (let x = 0; x < w; x += 1) b[x] = 1; // row 0: the part of a row at the top
  for (let y = 200; y < h; y += 1) for (let x = 0; x < w; x += 1) b[y * w + x] = 2; // came in
  for (let y = 1; y < 200; y += 1) b[y * w + 390] = 3; // the scrollbar's edge beside the band
  b[50 * w + 100] = 4; // a change within the band
  const rects = changedRectsAround(a, b, w, h, 1, 200);
  const key = (r) => r.join(",");
  assert.deepEqual(new Set(rects.map(key)), new Set([[0, 0, 400, 1], [96, 49, 16, 16], [384, 1, 16, 199], [0, 200, 400, 25]].map(key)));
  assert.deepEqual(changedRects(a, b, w, h).find(([, y]) => y === 192), [0, 192, 400, 33]); // whole tiles without it
});

test("an area is a palette PNG when it is screen content, else JPEG", async () => {
  const text = cropRgba(page(64, 64, 0), 64, 8, 8, 40, 20);
  const png = await encodeArea(text, 40, 20, 0.55, noJpeg);
  assert.equal(png.encoding, PNG);
  assert.deepEqual(readPng(png.data).rgba, new Uint8Array(text.buffer));
  let seed = 5;
  const photo = Uint8ClampedArray.from({ length: 32 * 32 * 4 }, () => (seed = (seed * 16807) % 2147483647) & 255);
  const asked = [];
  const jpeg = await encodeArea(photo, 32, 32, 0.55, async (...args) => (asked.push(args), Uint8Array.of(0xff, 0xd8)));
  assert.equal(jpeg.encoding, JPEG);
  assert.deepEqual(asked[0].slice(1), [32, 32, 0.55]);
});

test("a scrolled page goes out as one copy and the rows that came in, painting the new picture", async () => {
  const [w, h] = [96, 80]; // not scaled: the copy and its tiles must give the picture exactly
  for (const dy of [24, 13, -7]) {
    const state = new DeltaState({ jpeg: noJpeg });
    const first = state.scale(page(w, h, 300), w, h, w, h);
    assert.deepEqual(await state.encode(first, 0.55, 0), { delta: false });
    state.commit();
    const next = state.scale(page(w, h, 300 + dy), w, h, w, h);
    const coded = await state.encode(next, 0.55, 1000);
    assert.equal(coded.delta, true, `${dy}`);
    const { tiles, rgba } = applyDelta(first.data, w, h, coded.image);
    assert.equal(tiles[0].encoding, COPY, `${dy}: the copy first`);
    assert.ok(tiles[0].h >= h - Math.abs(dy) - 32, `${dy}: a copy of most rows`);
    assert.ok(tiles.slice(1).every((t) => t.encoding === PNG));
    // coded: only the rows that came in (not the 16-row tiles around them) and the edge
    const area = tiles.slice(1).reduce((a, t) => a + t.w * t.h, 0);
    assert.ok(area <= Math.abs(dy) * w + 16 * h, `${dy}: ${area} pixels coded`);
    assert.deepEqual(rgba, next.data, `${dy}: the painted picture is the new one`);
  }
});

test("scaled by 3.2, a scroll by 53 captured rows is still a copy (rows follow the page)", async () => {
  const [sw, sh, w, h] = [640, 360, 200, 112];
  const state = new DeltaState({ jpeg: async () => Uint8Array.of(0xff, 0xd8) }); // scaled noise: JPEG
  let top = 0;
  const first = state.scale(page(sw, sh, top), sw, sh, w, h);
  await state.encode(first, 0.55, 0);
  state.commit();
  let shown = first.data;
  for (const [n, dy] of [53, 53, -20, 60].entries()) {
    top += dy;
    const next = state.scale(page(sw, sh, top), sw, sh, w, h);
    assert.equal(next.source.shift[2], dy, "the captured rows' shift");
    const coded = await state.encode(next, 0.55, 1000 * (n + 1));
    assert.equal(coded.delta, true);
    const { tiles, rgba } = applyDelta(shown, w, h, coded.image, true);
    assert.equal(tiles[0].encoding, COPY, `${dy}: a copy`);
    assert.ok(tiles[0].h >= h - (Math.abs(dy) * h) / sh - 32, `${dy}: a copy of most rows`);
    // the copied rows are the new picture's exactly
    const [y0, y1] = [tiles[0].y, tiles[0].y + tiles[0].h];
    for (let y = y0; y < y1; y += 1) {
      assert.deepEqual(rgba.subarray(y * w * 4, (y * w + tiles[0].w) * 4), next.data.subarray(y * w * 4, (y * w + tiles[0].w) * 4));
    }
    state.commit();
    shown = next.data; // what the dashboard shows, its JPEG tiles decoded

  }
});

test("a page that settles after deltas is due once whole; a key frame ends that", async () => {
  const state = new DeltaState();
  assert.deepEqual(await state.encode(flat(32, 32, 0), 0.55, 0), { delta: false }); // the first: whole
  state.commit();
  assert.equal(state.settled(1e9), false); // only a key frame so far
  state.pending = { pixels: picture(32, 32), width: 32, height: 32, key: false, at: 1000 }; // a delta went out
  state.commit();
  assert.equal(state.settled(1000 + SETTLE_MS - 1), false);
  assert.equal(state.settled(1000 + SETTLE_MS), true);
  state.reset();
  assert.deepEqual(await state.encode(flat(32, 32, 0), 0.55, 1000 + SETTLE_MS), { delta: false });
  state.commit();
  assert.equal(state.settled(1e9), false);
});

test("in the grid a whole picture comes no more often than every GRID_WHOLE_GAP_MS", async () => {
  const state = new DeltaState();
  const wholeGapMs = GRID_WHOLE_GAP_MS;
  assert.deepEqual(await state.encode(flat(32, 32, 0), 0.55, 0, { wholeGapMs }), { delta: false });
  state.commit();
  // every pixel changed: a whole picture is due, but not within the gap
  assert.equal(await state.encode(flat(32, 32, 200), 0.55, 1000, { wholeGapMs }), null);
  assert.equal(state.deferred, true);
  assert.deepEqual(await state.encode(flat(32, 32, 200), 0.55, GRID_WHOLE_GAP_MS, { wholeGapMs }), { delta: false });
  assert.equal(state.deferred, false);
  assert.deepEqual(await state.encode(flat(32, 32, 200), 0.55, 1000), { delta: false }); // no gap: a close-up
  state.reset(); // asked for: never held back
  assert.deepEqual(await state.encode(flat(32, 32, 200), 0.55, 1000, { wholeGapMs }), { delta: false });
});

test("the same picture again is nothing to send", async () => {
  const state = new DeltaState();
  await state.encode(flat(32, 32, 9), 0.55, 0);
  state.commit();
  assert.equal(await state.encode(flat(32, 32, 9), 0.55, 1000), null);
  assert.equal(state.deferred, false);
});
