// Showing frame bytes in an <img> through object URLs, revoking each URL once it is
// replaced so a day of frames does not pile up in memory.

export class FrameImage {
  /** @param {HTMLImageElement} img */
  constructor(img) {
    this.img = img;
    this.objectUrl = null;
  }

  /** Show a parsed frame (see frames.js); the previous object URL is revoked. */
  showFrame(frame) {
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
