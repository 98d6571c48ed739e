// Viewer frames (server → dashboard), as docs/protocol.md defines them. Pure: bytes in,
// a plain object out, or a FrameError with a protocol error code. No DOM, no I/O.

export const VIEWER_MAGIC = "KBV1";
export const FRAME_MAGIC = "KBF1";
export const FRAME_HEADER_SIZE = 24;
export const MIME_BY_ENCODING = Object.freeze({ 1: "image/jpeg", 2: "image/webp", 3: "image/png" });
// Encoding 4: a delta frame, the changed tiles of the picture so far (docs/protocol.md).
export const TILES = 4;
export const TILE_COPY = 0;
export const MAX_TILES = 4096;
export const FRAME_KINDS = Object.freeze({ GRID: 1, FOCUS: 2 });
export const MAX_WIDTH = 7680;
export const MAX_HEIGHT = 4320;

// Leading bytes of each encoding, as the server checks them.
const SIGNATURES = Object.freeze({
  1: [0xff, 0xd8, 0xff],
  2: [0x52, 0x49, 0x46, 0x46],
  3: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
});

/** A binary message that is not a valid viewer frame; `code` is a protocol error code. */
export class FrameError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

function asciiAt(bytes, offset, length) {
  let text = "";
  for (let i = offset; i < offset + length; i += 1) text += String.fromCharCode(bytes[i]);
  return text;
}

/**
 * Split a viewer frame into its parts.
 * @param {ArrayBuffer|Uint8Array} data the binary WebSocket message
 * @returns {{studentId: number, kind: number, encoding: number, mime: string, width: number,
 *   height: number, seq: number, capturedAt: number, image: Uint8Array}}
 *   `image` is a view into `data` (no copy).
 */
export function parseViewerFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < 6 || asciiAt(bytes, 0, 4) !== VIEWER_MAGIC) {
    throw new FrameError("bad_magic", "viewer frame must start with KBV1");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const refLength = view.getUint16(4, false);
  if (refLength < 1 || 6 + refLength > bytes.length) {
    throw new FrameError("bad_frame", "viewer frame has a bad student ref");
  }
  const ref = asciiAt(bytes, 6, refLength);
  if (!/^[0-9]+$/.test(ref)) {
    throw new FrameError("bad_frame", "viewer frame has a bad student ref");
  }
  const start = 6 + refLength;
  if (bytes.length - start < 4 || asciiAt(bytes, start, 4) !== FRAME_MAGIC) {
    throw new FrameError("bad_magic", "agent frame must start with KBF1");
  }
  if (bytes.length - start <= FRAME_HEADER_SIZE) {
    throw new FrameError("bad_frame", "frame has no image after its header");
  }
  const version = bytes[start + 4];
  if (version !== 1) {
    throw new FrameError("unsupported_version", `frame header version ${version} not supported`);
  }
  const kind = bytes[start + 5];
  if (kind !== FRAME_KINDS.GRID && kind !== FRAME_KINDS.FOCUS) {
    throw new FrameError("bad_frame", `unknown frame kind ${kind}`);
  }
  const encoding = bytes[start + 6];
  const mime = encoding === TILES ? null : MIME_BY_ENCODING[encoding];
  if (mime === undefined) {
    throw new FrameError("bad_frame", `unknown image encoding ${encoding}`);
  }
  const width = view.getUint16(start + 8, false);
  const height = view.getUint16(start + 10, false);
  if (width < 1 || width > MAX_WIDTH || height < 1 || height > MAX_HEIGHT) {
    throw new FrameError("bad_frame", `implausible size ${width}x${height}`);
  }
  const imageStart = start + FRAME_HEADER_SIZE;
  const signature = SIGNATURES[encoding] || [];
  if (bytes.length - imageStart < signature.length || signature.some((b, i) => bytes[imageStart + i] !== b)) {
    throw new FrameError("bad_frame", `image bytes do not look like ${mime}`);
  }
  const seq = view.getUint32(start + 12, false);
  const capturedAt = Number(view.getBigUint64(start + 16, false));
  return {
    studentId: Number(ref),
    kind,
    encoding,
    mime,
    width,
    height,
    seq,
    capturedAt,
    image: bytes.subarray(imageStart),
  };
}

/**
 * The tiles of a delta frame's body (`frame.image` when `frame.encoding` is TILES), checked
 * as the server checks them: each inside the `width` × `height` picture, bytes not cut
 * short, none left over, a known encoding with its signature.
 * @returns {Array<{x: number, y: number, width: number, height: number, encoding: number,
 *   mime: string|null, data: Uint8Array|null, sourceX: number, sourceY: number}>}
 */
export function parseTiles(body, width, height) {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (body.length < 2) throw new FrameError("bad_tiles", "delta frame has no tile count");
  const count = view.getUint16(0, false);
  if (count < 1 || count > MAX_TILES) throw new FrameError("bad_tiles", `bad tile count ${count}`);
  const tiles = [];
  let i = 2;
  let area = 0;
  for (let n = 0; n < count; n += 1) {
    if (i + 14 > body.length) throw new FrameError("bad_tiles", `tile ${n} record cut short`);
    const x = view.getUint16(i, false);
    const y = view.getUint16(i + 2, false);
    const w = view.getUint16(i + 4, false);
    const h = view.getUint16(i + 6, false);
    const encoding = body[i + 8];
    const reserved = body[i + 9];
    const length = view.getUint32(i + 10, false);
    i += 14;
    if (reserved !== 0) throw new FrameError("bad_tiles", `tile ${n} reserved byte`);
    if (w < 1 || h < 1 || x + w > width || y + h > height) {
      throw new FrameError("tile_out_of_bounds", `tile ${n} is not inside the picture`);
    }
    area += w * h;
    if (area > width * height) throw new FrameError("bad_tiles", "tiles cover more than the picture");
    if (length < 1 || i + length > body.length) throw new FrameError("bad_tiles", `tile ${n} bytes cut short`);
    const data = body.subarray(i, i + length);
    i += length;
    if (encoding === TILE_COPY) {
      if (length !== 4) throw new FrameError("bad_tiles", `copy tile ${n} must carry 4 bytes`);
      const sourceX = (data[0] << 8) | data[1];
      const sourceY = (data[2] << 8) | data[3];
      if (sourceX + w > width || sourceY + h > height) {
        throw new FrameError("tile_out_of_bounds", `copy tile ${n} source is not inside the picture`);
      }
      tiles.push({ x, y, width: w, height: h, encoding, mime: null, data: null, sourceX, sourceY });
      continue;
    }
    const mime = MIME_BY_ENCODING[encoding];
    const signature = SIGNATURES[encoding];
    if (mime === undefined) throw new FrameError("bad_frame", `tile ${n} has an unknown encoding`);
    if (data.length < signature.length || signature.some((b, k) => data[k] !== b)) {
      throw new FrameError("bad_frame", `tile ${n} bytes do not look like ${mime}`);
    }
    tiles.push({ x, y, width: w, height: h, encoding, mime, data, sourceX: 0, sourceY: 0 });
  }
  if (i !== body.length) throw new FrameError("bad_tiles", "bytes after the last tile");
  return tiles;
}
