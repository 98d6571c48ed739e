// Unit tests of the extension's changed tiles: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import { DeltaState, GRID_WHOLE_GAP_MS, SETTLE_MS, buildTilesBody, changedRects, isScreenContent } from "../tiles.js";

function picture(width, height, fill = 0xffffffff) {
  return new Uint32Array(width * height).fill(fill);
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

test("few colours are screen content, many are not", () => {
  const flat = new Uint8Array(64 * 4 * 16).fill(255);
  assert.equal(isScreenContent(flat), true);
  let seed = 7;
  const noisy = Uint8Array.from({ length: 64 * 64 * 4 }, () => (seed = (seed * 16807) % 2147483647) & 255);
  assert.equal(isScreenContent(noisy), false);
});

test("the tiles body has the count, 14-byte records and the bytes", () => {
  const body = buildTilesBody([
    { x: 1, y: 2, width: 3, height: 4, encoding: 3, data: Uint8Array.of(9, 8) },
    { x: 0, y: 0, width: 1, height: 1, encoding: 1, data: Uint8Array.of(7) },
  ]);
  assert.deepEqual(Array.from(body.subarray(0, 18)), [0, 2, 0, 1, 0, 2, 0, 3, 0, 4, 3, 0, 0, 0, 0, 2, 9, 8]);
  assert.equal(body.length, 2 + 14 + 2 + 14 + 1);
});

test("a page that settles after deltas is due once whole; a key frame ends that", async () => {
  const state = new DeltaState();
  const ctx = { getImageData: (_x, _y, w, h) => ({ data: new Uint8ClampedArray(w * h * 4), width: w, height: h }) };
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, 0), { delta: false }); // the first: whole
  state.commit();
  assert.equal(state.settled(1e9), false); // only a key frame so far
  state.pending = { pixels: picture(32, 32), width: 32, height: 32, key: false, at: 1000 }; // a delta went out
  state.commit();
  assert.equal(state.settled(1000 + SETTLE_MS - 1), false);
  assert.equal(state.settled(1000 + SETTLE_MS), true);
  state.reset();
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, 1000 + SETTLE_MS), { delta: false });
  state.commit();
  assert.equal(state.settled(1e9), false);
});

test("in the grid a whole picture comes no more often than every GRID_WHOLE_GAP_MS", async () => {
  const state = new DeltaState();
  let fill = 0;
  const ctx = {
    getImageData: (_x, _y, w, h) => ({ data: new Uint8ClampedArray(w * h * 4).fill(fill), width: w, height: h }),
  };
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, 0, GRID_WHOLE_GAP_MS), { delta: false });
  state.commit();
  fill = 200; // every pixel changed: a whole picture is due, but not within the gap
  assert.equal(await state.encode(ctx, 32, 32, 55, 1000, GRID_WHOLE_GAP_MS), null);
  assert.equal(state.deferred, true);
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, GRID_WHOLE_GAP_MS, GRID_WHOLE_GAP_MS), { delta: false });
  assert.equal(state.deferred, false);
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, 1000), { delta: false }); // no gap: a close-up
  state.reset(); // asked for: never held back
  assert.deepEqual(await state.encode(ctx, 32, 32, 55, 1000, GRID_WHOLE_GAP_MS), { delta: false });
});
