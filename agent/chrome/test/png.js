// A small reader of the palette PNGs palette.js writes, for the unit tests (node's zlib):
// checks the signature, every chunk's CRC and the layout, and gives the RGBA pixels.
// (Not a test file itself; node --test loads it and finds no tests.)

import assert from "node:assert/strict";
import { crc32, inflateSync } from "node:zlib";

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

const crc = (bytes) => crc32(bytes) >>> 0; // node's zlib: not the code under test

/** {width, height, depth, palette: [[r,g,b]...], rgba: Uint8Array, chunks: [type...]} */
export function readPng(png) {
  assert.deepEqual(Array.from(png.subarray(0, 8)), SIGNATURE, "PNG signature");
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks = [];
  let header = null;
  let palette = null;
  const idat = [];
  for (let i = 8; i < png.length; ) {
    const length = view.getUint32(i);
    const type = String.fromCharCode(...png.subarray(i + 4, i + 8));
    const data = png.subarray(i + 8, i + 8 + length);
    assert.equal(view.getUint32(i + 8 + length), crc(png.subarray(i + 4, i + 8 + length)), `${type} CRC`);
    chunks.push(type);
    if (type === "IHDR") header = data;
    if (type === "PLTE") palette = Array.from({ length: data.length / 3 }, (_, k) => Array.from(data.subarray(k * 3, k * 3 + 3)));
    if (type === "IDAT") idat.push(data);
    i += 12 + length;
  }
  assert.equal(chunks[0], "IHDR");
  assert.equal(chunks.at(-1), "IEND");
  const hv = new DataView(header.buffer, header.byteOffset, 13);
  const width = hv.getUint32(0);
  const height = hv.getUint32(4);
  const depth = header[8];
  assert.equal(header[9], 3, "colour type 3: palette");
  const raw = inflateSync(Buffer.concat(idat));
  const stride = Math.ceil((width * depth) / 8);
  assert.equal(raw.length, height * (stride + 1));
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y += 1) {
    assert.equal(raw[y * (stride + 1)], 0, "filter none");
    for (let x = 0; x < width; x += 1) {
      const bit = x * depth;
      const byte = raw[y * (stride + 1) + 1 + (bit >> 3)];
      const index = (byte >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
      assert.ok(index < palette.length, "index inside the palette");
      rgba.set([...palette[index], 255], (y * width + x) * 4);
    }
  }
  return { width, height, depth, palette, rgba, chunks };
}
