// The class grid: one tile per student, ordered by display name.
import { thumbnailUrl } from "./api.js";
import { activeTabTitle, describeState, sortStudents } from "./format.js";
import { FrameImage } from "./images.js";
import { lang, t } from "./i18n.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

class Tile {
  constructor(student, onOpen) {
    this.student = { ...student, state: { ...(student.state || {}) }, tabs: student.tabs || [] };
    this.root = el("li", "tile");
    this.root.dataset.studentId = String(student.id);
    this.button = el("button", "tile-button");
    this.button.type = "button";
    this.button.addEventListener("click", () => onOpen(this.student.id, this.button));
    const screen = el("div", "tile-screen");
    const img = el("img", "tile-image");
    img.alt = t("tile.alt", { name: student.display_name });
    img.hidden = true;
    img.decoding = "async";
    this.image = new FrameImage(img);
    this.placeholder = el("span", "placeholder", t("tile.noImage"));
    screen.append(img, this.placeholder);
    img.addEventListener("load", () => {
      this.placeholder.hidden = true;
    });
    img.addEventListener("error", () => {
      if (!img.dataset.frameSeq) {
        this.image.clear();
        this.placeholder.hidden = false;
      }
    });
    const info = el("span", "tile-info");
    this.name = el("span", "tile-name", student.display_name);
    this.status = el("span", "tile-status");
    this.tab = el("span", "tile-tab");
    this.error = el("span", "tile-error");
    // how well the device proved who it is (docs/protocol.md, hello): flagged, not hidden;
    // on the name's line, so that a flagged tile is no taller than another
    this.identity = el("span", "tile-identity");
    const head = el("span", "tile-head");
    head.append(this.name, this.identity);
    info.append(head, this.status, this.tab, this.error);
    this.button.append(screen, info);
    this.root.append(this.button);
    if (student.has_thumbnail && !this.student.state.elsewhere) {
      this.image.showUrl(thumbnailUrl(student.id));
    }
    this.render();
  }

  render() {
    const { state, tabs } = this.student;
    const status = describeState(state, new Date(), lang);
    this.status.textContent = t(status.key, status.vars);
    this.status.className = `tile-status status-${status.kind}`;
    this.root.classList.toggle("is-offline", status.kind === "offline");
    this.root.classList.toggle("is-elsewhere", status.kind === "elsewhere");
    if (state.elsewhere) {
      this.image.clear();
      this.placeholder.textContent = t("tile.elsewhereNote");
      this.placeholder.hidden = false;
    } else if (this.placeholder.textContent !== t("tile.noImage")) {
      this.placeholder.textContent = t("tile.noImage");
    }
    const title = activeTabTitle(tabs);
    this.tab.textContent = title ?? "";
    this.tab.title = title ?? "";
    this.tab.hidden = !title;
    const flags = [];
    if (state.online && state.identity === "unverified") flags.push(t("tile.unverified"));
    if (state.contested) flags.push(t("tile.contested", { count: state.contested }));
    this.identity.textContent = flags.join(" · ");
    this.identity.hidden = flags.length === 0;
    const reason = state.capture_error;
    this.error.textContent = reason ? t("tile.captureError", { reason }) : "";
    this.error.hidden = !reason;
    this.button.setAttribute(
      "aria-label",
      t("tile.label", {
        name: this.student.display_name,
        status: [this.status.textContent, ...flags].join(", "),
      }),
    );
  }

  updateState(state) {
    this.student.state = { ...this.student.state, ...state };
    this.render();
  }

  updateTabs(tabs) {
    this.student.tabs = tabs;
    this.render();
  }

  showFrame(frame) {
    if (this.student.state.elsewhere) return;
    this.image.showFrame(frame);
    this.placeholder.hidden = true;
  }

  destroy() {
    this.image.release();
    this.root.remove();
  }
}

export class Grid {
  /**
   * @param {HTMLElement} list the <ul> holding the tiles
   * @param {(studentId: number, opener: HTMLElement) => void} onOpen a tile was chosen
   */
  constructor(list, onOpen) {
    this.list = list;
    this.onOpen = onOpen;
    this.tiles = new Map();
  }

  /** Replace all tiles with these students (ordered by display name). */
  render(students) {
    this.clear();
    for (const student of sortStudents(students, lang)) {
      const tile = new Tile(student, this.onOpen);
      this.tiles.set(student.id, tile);
      this.list.append(tile.root);
    }
  }

  clear() {
    for (const tile of this.tiles.values()) tile.destroy();
    this.tiles.clear();
    this.list.replaceChildren();
  }

  student(id) {
    return this.tiles.get(id)?.student ?? null;
  }

  tileButton(id) {
    return this.tiles.get(id)?.button ?? null;
  }

  updateState(id, state) {
    this.tiles.get(id)?.updateState(state);
  }

  updateTabs(id, tabs) {
    this.tiles.get(id)?.updateTabs(tabs);
  }

  showFrame(frame) {
    this.tiles.get(frame.studentId)?.showFrame(frame);
  }

  /** Re-render every tile's text (the "last seen" times, after a language change). */
  refresh() {
    for (const tile of this.tiles.values()) tile.render();
  }
}
