// Showing frame bytes in an <img> through object URLs, revoking each URL once it is
// replaced so a day of frames does not pile up in memory; delta frames (changed tiles) are
// painted on a <canvas> beside it that starts from the last key frame.
import { TILES, TILE_COPY, parseTiles } from "./frames.js";

// The largest frame the server can be set to ask for (focus_width, focus_height).
const MAX_WIDTH = 3840;
const MAX_HEIGHT = 2160;

export class FrameImage {
  /** @param {HTMLImageElement} img */
  constructor(img) {
    this.img = img;
    this.objectUrl = null;
    this.canvas = null; // made at the first delta, placed right after the <img>
    this.base = null; // {kind, width, height} of the key frame deltas paint on, or null
    this.painted = false; // whether the canvas holds the key frame yet
    this.generation = 0; // raised by each key frame and clear(): older paints are dropped
    this.chain = Promise.resolve(); // deltas are painted one after another, in order
  }

  /** Show a parsed frame (see frames.js); the previous object URL is revoked. A frame
   * larger than any the server asks for is not decoded at all (the server refuses those
   * too); every image is drawn inside its tile's fixed box (style.css). A delta is painted
   * only on the key frame of its kind and size; returns whether the frame was taken. */
  showFrame(frame) {
    if (!(frame.width <= MAX_WIDTH && frame.height <= MAX_HEIGHT)) return false;
    if (frame.encoding === TILES) return this.paintTiles(frame);
    this.generation += 1;
    this.base = { kind: frame.kind, width: frame.width, height: frame.height };
    this.painted = false;
    const url = URL.createObjectURL(new Blob([frame.image], { type: frame.mime }));
    this.img.src = url;
    this.img.dataset.frameSeq = String(frame.seq);
    this.img.hidden = false;
    if (this.canvas) this.canvas.hidden = true;
    this.release();
    this.objectUrl = url;
    return true;
  }

  paintTiles(frame) {
    const base = this.base;
    if (!base || base.kind !== frame.kind || base.width !== frame.width || base.height !== frame.height) {
      return false;
    }
    let tiles;
    try {
      tiles = parseTiles(frame.image, frame.width, frame.height);
    } catch (err) {
      console.warn("dropped a delta frame:", err.message);
      this.base = null; // what follows would paint on a wrong picture: wait for a key frame
      return false;
    }
    const generation = this.generation;
    const img = this.img;
    this.img.dataset.frameSeq = String(frame.seq);
    this.chain = this.chain
      .then(async () => {
        const bitmaps = await Promise.all(
          tiles.map((t) => (t.encoding === TILE_COPY ? null : createImageBitmap(new Blob([t.data], { type: t.mime })))),
        );
        try {
          if (generation !== this.generation) return;
          if (!this.painted) await img.decode(); // the key frame, to start from
          if (generation !== this.generation) return;
          const canvas = this.ensureCanvas(frame.width, frame.height);
          const ctx = canvas.getContext("2d");
          if (!this.painted) {
            ctx.drawImage(img, 0, 0, frame.width, frame.height);
            this.painted = true;
          }
          const before = tiles.some((t) => t.encoding === TILE_COPY) ? await createImageBitmap(canvas) : null;
          tiles.forEach((t, i) => {
            if (t.encoding === TILE_COPY) {
              ctx.drawImage(before, t.sourceX, t.sourceY, t.width, t.height, t.x, t.y, t.width, t.height);
            } else {
              ctx.drawImage(bitmaps[i], t.x, t.y, t.width, t.height);
            }
          });
          before?.close();
          canvas.dataset.frameSeq = String(frame.seq);
          canvas.hidden = false;
          img.hidden = true;
        } finally {
          bitmaps.forEach((b) => b?.close());
        }
      })
      .catch((err) => {
        console.warn("could not paint a delta frame:", err?.message || err);
        if (generation === this.generation) this.base = null;
      });
    return true;
  }

  ensureCanvas(width, height) {
    if (!this.canvas) {
      this.canvas = document.createElement("canvas");
      this.canvas.className = this.img.className;
      this.canvas.classList.add("frame-canvas");
      this.canvas.setAttribute("aria-hidden", "true");
      this.img.after(this.canvas);
    }
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
    return this.canvas;
  }

  /** Forget the picture deltas paint on, and hide and empty the canvas. */
  resetCanvas() {
    this.generation += 1;
    this.base = null;
    this.painted = false;
    if (this.canvas) {
      this.canvas.hidden = true;
      this.canvas.width = 0; // frees its pixels: nothing of a hidden picture stays
      delete this.canvas.dataset.frameSeq;
    }
  }

  /** Show fetched bytes (the stored thumbnail); the previous object URL is revoked. */
  showBlob(blob) {
    this.resetCanvas();
    const url = URL.createObjectURL(blob);
    this.img.src = url;
    delete this.img.dataset.frameSeq;
    this.img.hidden = false;
    this.release();
    this.objectUrl = url;
  }

  /** Show a plain URL. */
  showUrl(url) {
    this.resetCanvas();
    this.img.src = url;
    this.img.hidden = false;
    this.release();
  }

  /** Hide the image and free its object URL. */
  clear() {
    this.resetCanvas();
    this.img.removeAttribute("src");
    delete this.img.dataset.frameSeq;
    this.img.hidden = true;
    this.release();
  }

  release() {
    if (this.objectUrl !== null) {
      URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }
  }
}
