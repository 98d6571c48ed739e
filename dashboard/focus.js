// The focus view: one student's screen, large, and their full tab list by window.
import { groupTabsByWindow } from "./format.js";
import { FrameImage } from "./images.js";
import { clockTime, t } from "./i18n.js";
import { FRAME_KINDS } from "./frames.js";
import { captureReasonKey, describeTile, isDesktopWindow, isStale } from "./tilestate.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class FocusView {
  /**
   * @param {(studentId: number) => void} onClose the view was closed by the user
   * @param {(studentId: number, step: number) => void} onStep previous (-1) / next (+1)
   * @param {() => {connected: boolean, intervalMs: number}} live how the dashboard is now
   */
  constructor(onClose, onStep = () => {}, live = () => ({ connected: true, intervalMs: 2000 })) {
    this.onStep = onStep;
    this.live = live;
    this.picture = null;
    this.badge = document.getElementById("focus-badge");
    this.positionEl = document.getElementById("focus-position");
    this.prevButton = document.getElementById("focus-prev");
    this.nextButton = document.getElementById("focus-next");
    this.prevButton.textContent = `‹ ${t("focus.previous")}`;
    this.nextButton.textContent = `${t("focus.next")} ›`;
    this.prevButton.addEventListener("click", () => this.student && this.onStep(this.student.id, -1));
    this.nextButton.addEventListener("click", () => this.student && this.onStep(this.student.id, 1));
    this.root = document.getElementById("focus");
    this.nameEl = document.getElementById("focus-name");
    this.statusEl = document.getElementById("focus-status");
    this.errorEl = document.getElementById("focus-error");
    this.tabList = document.getElementById("focus-tab-list");
    this.placeholder = document.getElementById("focus-placeholder");
    this.closeButton = document.getElementById("focus-close");
    this.img = document.getElementById("focus-image");
    this.image = new FrameImage(this.img);
    this.onClose = onClose;
    this.student = null;
    this.opener = null;
    this.sawFocusFrame = false;
    this.closeButton.textContent = t("focus.close");
    this.closeButton.title = t("focus.closeHint");
    this.closeButton.addEventListener("click", () => this.close());
    this.root.addEventListener("click", (event) => {
      if (event.target === this.root) this.close();
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        event.preventDefault();
        this.close();
      }
    });
    this.img.addEventListener("load", () => {
      this.placeholder.hidden = true;
    });
  }

  get isOpen() {
    return this.student !== null;
  }

  get studentId() {
    return this.student ? this.student.id : null;
  }

  /** Where the student stands in the grid's order: "3 of 30". */
  setPosition(n, total) {
    this.positionEl.textContent = total > 1 ? t("focus.position", { n, total }) : "";
    this.prevButton.disabled = total < 2;
    this.nextButton.disabled = total < 2;
  }

  /** Open for `student` (as the grid knows it); `opener` gets focus back on close. */
  open(student, opener, { keepFocus = false } = {}) {
    this.picture = null;
    this.student = { ...student, state: { ...(student.state || {}) }, tabs: student.tabs || [] };
    this.opener = opener ?? null;
    this.sawFocusFrame = false;
    this.root.dataset.studentId = String(student.id);
    this.nameEl.textContent = t("focus.title", { name: student.display_name });
    this.img.alt = t("focus.alt", { name: student.display_name });
    this.image.clear();
    this.placeholder.textContent = student.state?.elsewhere ? t("tile.elsewhereNote") : t("tile.noImage");
    this.placeholder.hidden = false;
    this.errorEl.hidden = true;
    this.renderState();
    this.renderTabs();
    this.root.hidden = false;
    document.body.classList.add("has-focus");
    if (!keepFocus) this.closeButton.focus();
  }

  /** Close and tell the owner (who sends unfocus). */
  close() {
    if (!this.student) return;
    const id = this.student.id;
    this.onClose(id); // first: the owner lifts `inert`, so the tile can take focus back
    this.hide();
  }

  /** Close without telling the owner (class switched, connection gone for good). */
  hide() {
    if (!this.student) return;
    this.student = null;
    this.root.hidden = true;
    delete this.root.dataset.studentId;
    this.image.clear();
    this.picture = null;
    document.body.classList.remove("has-focus");
    const opener = typeof this.opener === "function" ? this.opener() : this.opener;
    if (opener && opener.isConnected) opener.focus();
    this.opener = null;
  }

  showError(message) {
    this.errorEl.textContent = t("focus.failed", { message });
    this.errorEl.hidden = false;
  }

  /** Update from the `focus` command's answer. */
  setStudent(student) {
    if (!this.student || student.id !== this.student.id) return;
    this.student = { ...this.student, ...student, state: { ...this.student.state, ...(student.state || {}) } };
    this.renderState();
    this.renderTabs();
  }

  updateState(id, state) {
    if (!this.student || id !== this.student.id) return;
    this.student.state = { ...this.student.state, ...state };
    this.renderState();
  }

  updateTabs(id, tabs) {
    if (!this.student || id !== this.student.id) return;
    this.student.tabs = tabs;
    this.renderTabs();
  }

  /** Show a frame of the focused student; once focus frames come, thumbnails are ignored. */
  showFrame(frame) {
    if (!this.student || frame.studentId !== this.student.id || this.student.state.elsewhere) return;
    if (frame.kind === FRAME_KINDS.FOCUS) this.sawFocusFrame = true;
    else if (this.sawFocusFrame) return;
    if (this.describe().picture === "hide") return;
    if (!this.image.showFrame(frame)) return;
    this.picture = { capturedAt: Math.min(frame.capturedAt, Date.now()) };
    this.img.dataset.width = String(frame.width);
    this.img.dataset.height = String(frame.height);
    this.placeholder.hidden = true;
    this.renderState();
  }

  describe() {
    const { connected, intervalMs } = this.live();
    const picture = this.picture ? { ...this.picture, stale: isStale(this.picture.capturedAt, Date.now(), intervalMs) } : null;
    return describeTile(this.student.state, { connected, picture });
  }

  renderState() {
    if (!this.student) return;
    const state = this.student.state;
    const desc = this.describe();
    let text = t(`state.${desc.state.code}`);
    if (desc.state.code === "offline" && state.last_seen && Number.isFinite(Date.parse(state.last_seen))) {
      text = t("state.offlineSeen", { time: clockTime(Date.parse(state.last_seen)) });
    }
    if (desc.state.code === "capture_error") text += ` · ${t(captureReasonKey(state.capture_error, state.capture_code))}`;
    for (const flag of desc.flags) text += ` · ${t(`flag.${flag.code}`, state)}`;
    this.statusEl.textContent = text;
    this.statusEl.className = `focus-status status-${desc.state.kind}`;
    if (desc.picture === "hide") {
      this.image.clear();
      this.picture = null;
      this.placeholder.textContent = desc.state.code === "outside_lesson_hours" ? t("screen.outside_lesson_hours") : t("screen.elsewhere");
      this.placeholder.hidden = false;
      this.badge.hidden = true;
      this.tabList.replaceChildren();
      return;
    }
    const old = this.picture !== null && (desc.picture === "label" || isStale(this.picture.capturedAt, Date.now(), this.live().intervalMs));
    this.badge.hidden = !old;
    this.root.classList.toggle("is-old", old);
    if (old) this.badge.textContent = t("screen.lastPicture", { time: clockTime(this.picture.capturedAt) });
  }

  renderTabs() {
    if (this.describe().picture === "hide") {
      this.tabList.replaceChildren();
      return;
    }
    const groups = groupTabsByWindow(this.student.tabs);
    const desktop = isDesktopWindow(this.student.tabs);
    document.getElementById("focus-tabs-title").textContent = desktop ? t("focus.activeWindow") : t("focus.tabs");
    if (groups.length === 0) {
      this.tabList.replaceChildren(el("p", "muted", t("focus.noTabs")));
      return;
    }
    const parts = [];
    for (const [index, group] of groups.entries()) {
      const section = el("section", "tab-window");
      if (groups.length > 1) {
        // Windows numbered 1…n in order, not by the browser's own window ids.
        section.append(el("h4", "tab-window-title", t("focus.window", { n: index + 1 })));
      }
      const list = el("ol", "tab-list");
      for (const tab of group.tabs) {
        const item = el("li", tab.active ? "tab is-active" : "tab");
        const title = el("span", "tab-title", tab.title || "—");
        item.append(title);
        if (tab.active && !desktop) item.append(el("span", "tab-badge", t("focus.active")));
        if (tab.url) item.append(el("span", "tab-url", tab.url));
        list.append(item);
      }
      section.append(list);
      parts.push(section);
    }
    this.tabList.replaceChildren(...parts);
  }
}
