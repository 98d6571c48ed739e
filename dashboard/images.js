// Showing frame bytes in an <img> through object URLs, revoking each URL once it is
// replaced so a day of frames does not pile up in memory.

// The largest frame the server can be set to ask for (focus_width, focus_height).
const MAX_WIDTH = 3840;
const MAX_HEIGHT = 2160;

export class FrameImage {
  /** @param {HTMLImageElement} img */
  constructor(img) {
    this.img = img;
    this.objectUrl = null;
  }

  /** Show a parsed frame (see frames.js); the previous object URL is revoked. A frame
   * larger than any the server asks for is not decoded at all (the server refuses those
   * too); every image is drawn inside its tile's fixed box (style.css). */
  showFrame(frame) {
    if (!(frame.width <= MAX_WIDTH && frame.height <= MAX_HEIGHT)) return;
    const url = URL.createObjectURL(new Blob([frame.image], { type: frame.mime }));
    this.img.src = url;
    this.img.dataset.frameSeq = String(frame.seq);
    this.img.hidden = false;
    this.release();
    this.objectUrl = url;
  }

  /** Show fetched bytes (the stored thumbnail); the previous object URL is revoked. */
  showBlob(blob) {
    const url = URL.createObjectURL(blob);
    this.img.src = url;
    delete this.img.dataset.frameSeq;
    this.img.hidden = false;
    this.release();
    this.objectUrl = url;
  }

  /** Show a plain URL. */
  showUrl(url) {
    this.img.src = url;
    this.img.hidden = false;
    this.release();
  }

  /** Hide the image and free its object URL. */
  clear() {
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
