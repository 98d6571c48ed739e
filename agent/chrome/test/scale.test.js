// Unit tests of the extension's scaling and scroll finding: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import { findScroll, findShift, nextPhase, rowHashes, scalePicture, scrollColumns } from "../scale.js";

/** A tall page of distinct "text" rows: RGBA of the `height` rows from `top`. */
function page(width, height, top) {
  const out = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    const d = y + top;
    for (let x = 0; x < width; x += 1) {
      const ink = d % 23 < 15 && (Math.imul(d * 7919 + (x >> 2), 2246822519) >>> 9) % 4 < 2 && x > 8;
      const v = ink ? 30 + (d % 5) * 10 : 250;
      out.set([v, v, ink ? 90 : 250, 255], (y * width + x) * 4);
    }
  }
  return out;
}

const rowsOf = (rgba, width) => (y) => Array.from(new Uint32Array(rgba.buffer, y * width * 4, width));

test("an area average of whole blocks is their mean; 1:1 is a copy", () => {
  // 4 x 2 into 2 x 1: each sent pixel the mean of a 2 x 2 block
  const src = Uint8ClampedArray.of(
    0, 0, 0, 255, 10, 20, 30, 255, 100, 100, 100, 255, 200, 200, 200, 255,
    20, 40, 60, 255, 30, 60, 90, 255, 100, 100, 100, 255, 201, 201, 201, 255,
  );
  assert.deepEqual(Array.from(scalePicture(src, 4, 2, 2, 1)), [15, 30, 45, 255, 150, 150, 150, 255]);
  const same = scalePicture(src, 4, 2, 4, 2);
  assert.deepEqual(same, src);
  assert.notEqual(same.buffer, src.buffer);
});

test("a scale by 3.2 gives a captured row's parts to the sent rows it falls in", () => {
  // one column, 16 rows of 0 then 255 at row 8 (units: a captured row is 5, a sent row 16)
  const src = new Uint8ClampedArray(16 * 4).fill(0);
  for (let y = 8; y < 16; y += 1) src.set([255, 255, 255, 255], y * 4);
  const red = (rgba) => Array.from({ length: rgba.length / 4 }, (_, i) => rgba[i * 4]);
  assert.deepEqual(red(scalePicture(src, 1, 16, 1, 5)), [0, 0, 128, 255, 255]); // row 2: 8 of 16 units
  // phase 6: row 0 is units 0..6, then 6..22, 22..38, 38..54 (2 units of 0, 14 of 255), 54..70;
  // 70..80 is not shown
  assert.deepEqual(red(scalePicture(src, 1, 16, 1, 5, 6)), [0, 0, 0, 223, 255]);
});

test("bad phases and enlarging are refused", () => {
  const src = new Uint8ClampedArray(8 * 8 * 4);
  assert.throws(() => scalePicture(src, 8, 8, 4, 4, 0), /phase must be an integer in 1..8/);
  assert.throws(() => scalePicture(src, 8, 8, 4, 4, 9), /phase/);
  assert.throws(() => scalePicture(src, 8, 8, 4, 4, 2.5), /phase/);
  assert.throws(() => scalePicture(src, 8, 8, 16, 4), /only shrinks/);
});

test("nextPhase stays in 1..srcHeight and undoes itself", () => {
  for (const dy of [-300, -53, -1, 0, 1, 7, 53, 60, 300, 1000]) {
    const p = nextPhase(720, dy, 720, 225);
    assert.ok(p >= 1 && p <= 720 && Number.isInteger(p), `${dy}: ${p}`);
    assert.equal(nextPhase(p, -dy, 720, 225), 720);
  }
  assert.equal(nextPhase(720, 16, 720, 225), 720); // 16 rows of 225 units: 5 whole sent rows
});

test("with the phase following a scroll by any whole number of rows, the sent rows move whole", () => {
  const [sw, sh, w, h] = [160, 144, 50, 45]; // a scale by 3.2, as 1280 x 720 into 400 x 225
  for (const dy of [53, 60, 7, 1, -41]) {
    const top = 500;
    const phase = nextPhase(100, dy, sh, h);
    const shift = (dy * h + phase - 100) / sh; // new row y is old row y + shift
    assert.ok(Number.isInteger(shift));
    const before = scalePicture(page(sw, sh, top), sw, sh, w, h, 100);
    const after = scalePicture(page(sw, sh, top + dy), sw, sh, w, h, phase);
    const a = rowsOf(after, w);
    const b = rowsOf(before, w);
    if (shift === 0) { // less than a sent row: the rows stay where they were, but row 0
      for (let y = 1; y < h - 1; y += 1) assert.deepEqual(a(y), b(y), `${dy}: row ${y}`);
      continue;
    }
    const found = findScroll(new Uint32Array(before.buffer), new Uint32Array(after.buffer), w, h);
    assert.ok(found, `a scroll by ${dy} is found`);
    const [y0, y1, m, cols] = found;
    assert.equal(m, shift, `${dy} captured rows are ${shift} sent rows`);
    assert.ok(y1 - y0 >= h - Math.abs(shift) - 2, `${dy}: band ${y0}..${y1}`);
    for (let y = y0; y < y1; y += 1) assert.deepEqual(a(y).slice(0, cols), b(y + m).slice(0, cols));
    // and scaled the plain way (the phase not moved), a scroll by 53 moves no whole rows
    if (dy === 53) {
      const plain = scalePicture(page(sw, sh, top + dy), sw, sh, w, h, 100);
      assert.equal(findScroll(new Uint32Array(before.buffer), new Uint32Array(plain.buffer), w, h), null);
    }
  }
});

test("findShift finds a shift either way; unrelated or repeated rows give none", () => {
  const old = Uint32Array.from({ length: 100 }, (_, i) => i * 2654435761);
  const down = Uint32Array.from({ length: 100 }, (_, i) => (i < 70 ? old[i + 30] : 7 + i));
  assert.deepEqual(findShift(old, down), [0, 70, 30]);
  const up = Uint32Array.from({ length: 100 }, (_, i) => (i >= 20 ? old[i - 20] : 9 + i));
  assert.deepEqual(findShift(old, up), [20, 100, -20]);
  assert.equal(findShift(old, Uint32Array.from({ length: 100 }, (_, i) => i + 1e6)), null);
  const small = Uint32Array.from({ length: 100 }, (_, i) => (i < 20 ? old[i + 30] : 7 + i));
  assert.equal(findShift(old, small), null, "a band under a quarter of the picture");
  const blank = new Uint32Array(100).fill(5); // rows all alike vote for nothing
  assert.equal(findShift(blank, blank.slice()), null);
  assert.equal(findShift(old, old.slice(0, 50)), null, "another height");
});

test("findScroll leaves the scrollbar's edge out and checks rows, not only hashes", () => {
  const [w, h] = [100, 64];
  const rgba = page(w, h * 2, 0);
  const all = new Uint32Array(rgba.buffer);
  const before = all.slice(0, w * h);
  const after = all.slice(w * 20, w * (h + 20));
  for (let y = 0; y < h; y += 1) after[y * w + w - 3] = 0xff00ff00 + y; // a moving thumb at the edge
  const found = findScroll(before, after, w, h);
  assert.deepEqual(found, [0, h - 20, 20, scrollColumns(w)]);
  assert.equal(scrollColumns(w), w - 16);
  assert.equal(scrollColumns(1280, 400), 1280 - 52); // 16 sent pixels, in captured ones
  assert.equal(scrollColumns(60), 60); // too narrow to leave anything out
  const hashes = rowHashes(before, w, h, scrollColumns(w));
  assert.equal(hashes.length, h);
});
