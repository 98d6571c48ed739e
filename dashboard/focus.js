// The focus view: one student's screen, large, and their full tab list by window.
import { describeState, groupTabsByWindow } from "./format.js";
import { FrameImage } from "./images.js";
import { lang, t } from "./i18n.js";
import { FRAME_KINDS } from "./frames.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class FocusView {
  /** @param {(studentId: number) => void} onClose the view was closed by the user */
  constructor(onClose) {
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

  /** Open for `student` (as the grid knows it); `opener` gets focus back on close. */
  open(student, opener) {
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
    this.closeButton.focus();
  }

  /** Close and tell the owner (who sends unfocus). */
  close() {
    if (!this.student) return;
    const id = this.student.id;
    this.hide();
    this.onClose(id);
  }

  /** Close without telling the owner (class switched, connection gone for good). */
  hide() {
    if (!this.student) return;
    this.student = null;
    this.root.hidden = true;
    delete this.root.dataset.studentId;
    this.image.clear();
    document.body.classList.remove("has-focus");
    if (this.opener && this.opener.isConnected) this.opener.focus();
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
    this.image.showFrame(frame);
    this.img.dataset.width = String(frame.width);
    this.img.dataset.height = String(frame.height);
    this.placeholder.hidden = true;
  }

  renderState() {
    const state = this.student.state;
    const status = describeState(state, new Date(), lang);
    let text = t(status.key, status.vars);
    if (state.capture_error) text += ` · ${t("tile.captureError", { reason: state.capture_error })}`;
    this.statusEl.textContent = text;
    this.statusEl.className = `focus-status status-${status.kind}`;
    if (state.elsewhere) {
      this.image.clear();
      this.placeholder.textContent = t("tile.elsewhereNote");
      this.placeholder.hidden = false;
    }
  }

  renderTabs() {
    const groups = groupTabsByWindow(this.student.tabs);
    if (groups.length === 0) {
      this.tabList.replaceChildren(el("p", "muted", t("focus.noTabs")));
      return;
    }
    const parts = [];
    for (const group of groups) {
      const section = el("section", "tab-window");
      if (groups.length > 1 || group.window !== 0) {
        section.append(el("h4", "tab-window-title", t("focus.window", { n: group.window })));
      }
      const list = el("ol", "tab-list");
      for (const tab of group.tabs) {
        const item = el("li", tab.active ? "tab is-active" : "tab");
        const title = el("span", "tab-title", tab.title || "—");
        item.append(title);
        if (tab.active) item.append(el("span", "tab-badge", t("focus.active")));
        if (tab.url) item.append(el("span", "tab-url", tab.url));
        list.append(item);
      }
      section.append(list);
      parts.push(section);
    }
    this.tabList.replaceChildren(...parts);
  }
}
