// The dashboard's viewer-frame parser against vectors made by the reference
// implementation (server/klasblik/protocol.py) and against one frame built by hand.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { FrameError, parseTiles, parseViewerFrame } from "../dashboard/frames.js";

const vectors = JSON.parse(readFileSync(process.env.KLASBLIK_FRAME_VECTORS, "utf8"));

test("vectors were given", () => {
  assert.ok(vectors.valid.length >= 3 && vectors.invalid.length >= 5);
});

for (const vector of vectors.valid) {
  test(`parses ${vector.name} like the reference`, () => {
    const frame = parseViewerFrame(Buffer.from(vector.data, "base64"));
    const want = vector.expect;
    assert.equal(frame.studentId, want.student_id);
    assert.equal(frame.kind, want.kind);
    assert.equal(frame.encoding, want.encoding);
    assert.equal(frame.mime, want.mime);
    assert.equal(frame.width, want.width);
    assert.equal(frame.height, want.height);
    assert.equal(frame.seq, want.seq);
    assert.equal(frame.capturedAt, want.captured_at_ms);
    assert.equal(Buffer.from(frame.image).toString("base64"), want.image);
  });
}

for (const vector of vectors.invalid) {
  test(`refuses ${vector.name} with ${vector.code} like the reference`, () => {
    assert.throws(
      () => parseViewerFrame(Buffer.from(vector.data, "base64")),
      (err) => err instanceof FrameError && err.code === vector.code,
    );
  });
}

test("parses a frame built by hand from an ArrayBuffer, image as a view", () => {
  const bytes = [
    ...[0x4b, 0x42, 0x56, 0x31], 0x00, 0x02, 0x34, 0x32, // KBV1, ref length 2, "42"
    ...[0x4b, 0x42, 0x46, 0x31], 1, 2, 3, 0, // KBF1, version 1, focus, png, flags
    0x05, 0x00, 0x02, 0xd0, // 1280 x 720
    0xff, 0xff, 0xff, 0xfe, // seq 2^32 - 2
    0x00, 0x00, 0x01, 0x93, 0x5e, 0x1f, 0x6a, 0x00, // captured_at
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x01, // PNG signature + 1 byte
  ];
  const buffer = new Uint8Array(bytes).buffer;
  const frame = parseViewerFrame(buffer);
  assert.equal(frame.studentId, 42);
  assert.equal(frame.kind, 2);
  assert.equal(frame.mime, "image/png");
  assert.equal(frame.width, 1280);
  assert.equal(frame.height, 720);
  assert.equal(frame.seq, 4294967294);
  assert.equal(frame.capturedAt, 0x01935e1f6a00);
  assert.equal(frame.image.length, 9);
  assert.equal(frame.image.buffer, buffer);
  assert.equal(frame.image[8], 0x01);
});

const tiles = vectors.tiles;

for (const vector of tiles.valid) {
  test(`parses the delta tiles ${vector.name} like the reference`, () => {
    const got = parseTiles(new Uint8Array(Buffer.from(vector.data, "base64")), tiles.width, tiles.height);
    assert.deepEqual(
      got.map((t) => [t.x, t.y, t.width, t.height, t.encoding, t.sourceX, t.sourceY]),
      vector.expect,
    );
  });
}

for (const vector of tiles.invalid) {
  test(`refuses the delta tiles ${vector.name} with ${vector.code} like the reference`, () => {
    assert.throws(
      () => parseTiles(new Uint8Array(Buffer.from(vector.data, "base64")), tiles.width, tiles.height),
      (err) => err instanceof FrameError && err.code === vector.code,
    );
  });
}
