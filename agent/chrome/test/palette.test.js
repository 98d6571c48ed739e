// Unit tests of the extension's palette PNGs: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { crc32 as zlibCrc32 } from "node:zlib";

import { bitDepth, crc32, packRows, paletteOf, palettePng, pickColours, writePalettePng } from "../palette.js";
import { readPng } from "./png.js";

/** RGBA bytes of width × height from a function (x, y) -> [r, g, b]. */
function area(width, height, colour) {
  const out = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) out.set([...colour(x, y), 255], (y * width + x) * 4);
  }
  return out;
}

function noise(seed) {
  return () => (seed = (seed * 16807) % 2147483647) & 255;
}

test("crc32 is PNG's CRC (the IEND chunk's well-known one, and zlib's)", () => {
  assert.equal(crc32(new TextEncoder().encode("IEND")), 0xae426082);
  const bytes = Uint8Array.from({ length: 1000 }, noise(3));
  assert.equal(crc32(bytes), zlibCrc32(bytes) >>> 0);
});

test("a few colours come back exactly, at the smallest bit depth, rows not byte-aligned", async () => {
  for (const colours of [2, 3, 4, 7, 16, 17, 32]) {
    const pick = (x, y) => {
      const i = (x * 37 + y * 11) % colours;
      return [i * 7, 200, 255 - i];
    };
    const rgba = area(13, 5, pick);
    const png = await palettePng(rgba, 13, 5);
    const got = readPng(png);
    assert.equal(got.width, 13);
    assert.equal(got.height, 5);
    assert.equal(got.depth, bitDepth(colours));
    assert.equal(got.palette.length, colours);
    assert.deepEqual(got.rgba, new Uint8Array(rgba.buffer), `${colours} colours`);
    assert.deepEqual(got.chunks, ["IHDR", "PLTE", "IDAT", "IEND"]);
  }
});

test("bit depths pack pixels from the high bits, each row after a filter byte", () => {
  const index = Uint8Array.of(1, 0, 1, 1, 0, 0, 0, 0, 1, 3, 2, 1, 0, 3);
  assert.deepEqual(Array.from(packRows(index.subarray(0, 9), 9, 1, 1)), [0, 0b10110000, 0b10000000]);
  assert.deepEqual(Array.from(packRows(index.subarray(9, 14), 5, 1, 2)), [0, 0b11100100, 0b11000000]);
  assert.deepEqual(Array.from(packRows(Uint8Array.of(5, 9, 1, 2), 2, 2, 4)), [0, 0x59, 0, 0x12]);
});

test("smoothed text keeps its ink and paper: every other colour becomes the nearest picked", () => {
  // black text on white with 60 grey edge levels, most of them near white
  const grey = (x, y) => {
    const v = (x * 7 + y * 3) % 100;
    const level = v < 60 ? 255 : v < 80 ? 0 : 255 - (v - 80) * 4 - (y % 3);
    return [level, level, level];
  };
  const rgba = area(64, 64, grey);
  const coded = paletteOf(rgba, 8);
  assert.ok(coded, "screen content");
  assert.equal(coded.palette.length, 8);
  const picked = Array.from(coded.palette, (v) => v & 255);
  assert.ok(picked.includes(255) && picked.includes(0), `ink and paper in ${picked}`);
  const pixels = new Uint32Array(rgba.buffer);
  for (let i = 0; i < pixels.length; i += 1) {
    const want = pixels[i] & 255;
    const got = coded.palette[coded.index[i]] & 255;
    const best = Math.min(...picked.map((p) => Math.abs(p - want)));
    assert.equal(Math.abs(got - want), best, `pixel ${i}: ${want} drawn as ${got}`);
  }
});

test("pickColours spreads out: a rare far colour beats many near ones", () => {
  const colours = [[0xffffffff, 1000], [0xfffefefe, 300], [0xfffdfdfd, 200], [0xff000000, 50]];
  assert.deepEqual(pickColours(colours, 2).map(([v]) => v >>> 0), [0xffffffff, 0xff000000]);
  assert.equal(pickColours(colours, 9).length, 4); // never more than there are
});

test("a photo is not screen content; text over a few noisy pixels is", async () => {
  const photo = Uint8ClampedArray.from({ length: 64 * 64 * 4 }, noise(7));
  assert.equal(paletteOf(photo), null);
  assert.equal(await palettePng(photo, 64, 64), null);
  const random = noise(11);
  const mostlyFlat = area(100, 100, (x, y) => ((x * 13 + y * 7) % 100 < 3 ? [random(), random(), random()] : x % 5 ? [255, 255, 255] : [0, 0, 80]));
  const coded = paletteOf(mostlyFlat);
  assert.ok(coded, "97 % in two colours: screen content with smoothed edges");
  assert.ok(coded.palette.length <= 32);
});

test("writePalettePng refuses what no PNG can hold", async () => {
  await assert.rejects(writePalettePng(new Uint32Array(257), new Uint8Array(4), 2, 2), /1 to 256 colours/);
  await assert.rejects(writePalettePng(new Uint32Array(2), new Uint8Array(3), 2, 2), /one palette index a pixel/);
});
