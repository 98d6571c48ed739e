// The class grid: one tile per student; what each tile says comes from tilestate.js.
// Tools: search by name, sort (name with online first, status, recent change), filter
// (everyone, offline, problems), tile size; arrow keys move between tiles.
import { activeTabTitle } from "./format.js";
import { FrameImage } from "./images.js";
import { clockTime, lang, t } from "./i18n.js";
import { captureReasonKey, describeTile, domainOf, isDesktopWindow, isStale } from "./tilestate.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Lower-case, accents removed: "Zoë" matches "zoe". */
export function searchKey(text) {
  return String(text || "")
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase();
}

/** The tile's status text (and offline time) for a described state. */
function statusText(desc, state) {
  if (desc.state.code === "offline" && state.last_seen) {
    const ms = Date.parse(state.last_seen);
    if (Number.isFinite(ms)) return t("state.offlineSeen", { time: clockTime(ms) });
  }
  return t(`state.${desc.state.code}`);
}

class Tile {
  constructor(student, grid) {
    this.grid = grid;
    this.student = { ...student, state: { ...(student.state || {}) }, tabs: student.tabs || [] };
    this.picture = null; // {capturedAt: ms, stored: bool} of the picture on screen
    this.changedAt = 0; // last change of status or active tab (ms), for "recent change"
    this.lastSignature = "";
    this.desc = null;
    this.root = el("li", "tile");
    this.root.dataset.studentId = String(student.id);
    this.button = el("button", "tile-button");
    this.button.type = "button";
    this.button.addEventListener("click", () => grid.onOpen(this.student.id, this.button));
    const screen = el("div", "tile-screen");
    const img = el("img", "tile-image");
    img.alt = "";
    img.hidden = true;
    img.decoding = "async";
    this.img = img;
    this.image = new FrameImage(img);
    this.placeholder = el("span", "placeholder", t("tile.noImage"));
    this.badge = el("span", "screen-badge");
    this.badge.hidden = true;
    screen.append(img, this.placeholder, this.badge);
    const info = el("span", "tile-info");
    this.name = el("span", "tile-name", student.display_name);
    this.status = el("span", "tile-status");
    this.flags = el("span", "tile-flags");
    this.tab = el("span", "tile-tab");
    this.error = el("span", "tile-error");
    // flags on the name's line, so that a flagged tile is no taller than another
    const head = el("span", "tile-head");
    head.append(this.name, this.flags);
    info.append(head, this.status, this.tab, this.error);
    this.button.append(screen, info);
    this.button.append(el("span", "visually-hidden", t("tile.openHint")));
    this.root.append(this.button);
    this.nameKey = searchKey(student.display_name);
  }

  get ctx() {
    const picture = this.picture
      ? { ...this.picture, stale: this.picture.stored || isStale(this.picture.capturedAt, Date.now(), this.grid.intervalMs) }
      : null;
    return { connected: this.grid.connected, picture };
  }

  render() {
    const { state, tabs } = this.student;
    const ctx = this.ctx;
    const desc = describeTile(state, ctx);
    this.desc = desc;
    const signature = `${desc.state.code}|${activeTabTitle(tabs) ?? ""}`;
    if (signature !== this.lastSignature) {
      if (this.lastSignature) this.changedAt = Date.now();
      this.lastSignature = signature;
    }
    const status = statusText(desc, state);
    this.status.textContent = status;
    this.status.className = `tile-status status-${desc.state.kind}`;
    this.root.dataset.state = desc.state.code;
    this.root.classList.toggle("is-offline", desc.state.code === "offline");
    this.root.classList.toggle("is-problem", desc.problem);

    const flagTexts = desc.flags.map((flag) => t(`flag.${flag.code}`, state));
    this.flags.replaceChildren(...flagTexts.map((text) => el("span", "flag", text)));
    this.flags.hidden = flagTexts.length === 0;

    // The picture: hidden (nothing of it stays), labelled with its time, or shown.
    if (desc.picture === "hide") {
      this.image.clear();
      this.picture = null;
      this.placeholder.textContent = hiddenText(desc.state.code);
      this.placeholder.hidden = false;
      this.badge.hidden = true;
      this.root.classList.remove("is-old");
    } else {
      const has = this.picture !== null;
      this.placeholder.hidden = has;
      if (!has) this.placeholder.textContent = desc.state.code === "not_live" ? t("screen.notLive") : t("tile.noImage");
      const old = has && (desc.picture === "label" || ctx.picture.stale);
      this.root.classList.toggle("is-old", old);
      this.badge.hidden = !old;
      if (old) {
        const key = this.picture.stored ? "screen.storedPicture" : "screen.lastPicture";
        this.badge.textContent = t(key, { time: clockTime(this.picture.capturedAt) });
      }
    }

    // The tab title (never under "nothing is shown"), with its site's domain.
    const title = desc.picture === "hide" ? null : activeTabTitle(tabs);
    const active = (tabs || []).find((tab) => tab.active);
    let tabText = "";
    if (title) tabText = isDesktopWindow(tabs) ? t("tile.activeWindow", { title }) : title;
    const domain = title && active ? domainOf(active.url) : "";
    this.tab.replaceChildren();
    if (domain) this.tab.append(el("span", "tab-domain", domain), " ");
    this.tab.append(tabText);
    this.tab.title = tabText;
    this.tab.hidden = !tabText;

    const reason = desc.state.code === "capture_error" ? state.capture_error : null;
    this.error.textContent = reason ? t(captureReasonKey(reason, state.capture_code)) : "";
    this.error.dataset.reason = reason || "";
    this.error.hidden = !reason;

    // The button's accessible name is its visible text (name, status, flags, tab title and
    // domain, error), so what is read out is what is seen; the hint comes last.
    this.img.alt = "";
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
    if (this.desc && this.desc.picture === "hide") return;
    if (!this.image.showFrame(frame)) return;
    this.picture = { capturedAt: Math.min(frame.capturedAt, Date.now()), stored: false };
    this.render();
  }

  /** The last stored thumbnail, with its time (Last-Modified), until a live frame comes. */
  async loadStored(url) {
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin" });
    } catch {
      return;
    }
    if (!response.ok || this.picture !== null || !this.root.isConnected) return;
    const blob = await response.blob();
    if (this.picture !== null || (this.desc && this.desc.picture === "hide")) return;
    const modified = Date.parse(response.headers.get("Last-Modified") || "");
    this.image.showBlob(blob);
    this.picture = { capturedAt: Number.isFinite(modified) ? modified : Date.now(), stored: true };
    this.render();
  }

  destroy() {
    this.image.release();
    this.root.remove();
  }
}

function hiddenText(code) {
  if (code === "outside_lesson_hours") return t("screen.outside_lesson_hours");
  if (code === "elsewhere") return t("screen.elsewhere");
  return t("screen.hidden");
}

const SIZES = ["small", "medium", "large"];

export class Grid {
  /**
   * @param {HTMLElement} list the <ul> holding the tiles
   * @param {(studentId: number, opener: HTMLElement) => void} onOpen a tile was chosen
   */
  constructor(list, onOpen) {
    this.list = list;
    this.onOpen = onOpen;
    this.tiles = new Map();
    this.intervalMs = 2000;
    this.connected = false;
    // Below 1500 px wide, small tiles by default so a class of 30 fits without scrolling far.
    this.options = { sort: "name", filter: "all", search: "", size: window.innerWidth < 1500 ? "small" : "medium" };
    try {
      const size = window.localStorage.getItem("klasblik.tileSize");
      if (SIZES.includes(size)) this.options.size = size;
    } catch {
      // no storage: the default size
    }
    this.list.dataset.size = this.options.size;
    this.onCount = null;
    this.collator = new Intl.Collator(lang, { sensitivity: "base", numeric: true });
    this.list.addEventListener("keydown", (event) => this.onKey(event));
  }

  /** Replace all tiles with these students. */
  render(students, thumbnailUrl) {
    this.clear();
    for (const student of students) {
      const tile = new Tile(student, this);
      this.tiles.set(student.id, tile);
      tile.render();
      if (student.has_thumbnail && thumbnailUrl) tile.loadStored(thumbnailUrl(student.id));
    }
    this.apply();
  }

  clear() {
    for (const tile of this.tiles.values()) tile.destroy();
    this.tiles.clear();
    this.list.replaceChildren();
    this.apply();
  }

  setOption(name, value) {
    this.options[name] = value;
    if (name === "size") {
      this.list.dataset.size = value;
      try {
        window.localStorage.setItem("klasblik.tileSize", value);
      } catch {
        // not remembered
      }
    }
    this.apply();
  }

  setConnected(on) {
    if (this.connected === on) return;
    this.connected = on;
    this.refresh();
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

  /** Re-render every tile (picture ages, the connection) and re-apply order and filter. */
  refresh() {
    for (const tile of this.tiles.values()) tile.render();
    this.apply();
  }

  /** The class-wide reason when every tile is hidden by the same one, else null. */
  commonBlock() {
    let code = null;
    for (const tile of this.tiles.values()) {
      const c = tile.desc?.state.code;
      if (c !== "elsewhere" && c !== "outside_lesson_hours") return null;
      if (code !== null && c !== code) return null;
      code = c;
    }
    return code;
  }

  matches(tile) {
    const { filter, search } = this.options;
    if (search && !tile.nameKey.includes(searchKey(search))) return false;
    if (filter === "offline") return tile.desc.state.code === "offline";
    if (filter === "problems") return tile.desc.problem;
    return true;
  }

  compare(a, b) {
    const byName = this.collator.compare(a.student.display_name, b.student.display_name) || a.student.id - b.student.id;
    const { sort } = this.options;
    if (sort === "status") return a.desc.rank - b.desc.rank || byName;
    if (sort === "recent") return b.changedAt - a.changedAt || byName;
    const offA = a.desc.state.code === "offline" ? 1 : 0;
    const offB = b.desc.state.code === "offline" ? 1 : 0;
    return offA - offB || byName;
  }

  /** The tiles in the order shown, visible ones only. */
  visibleTiles() {
    return [...this.tiles.values()].filter((tile) => !tile.root.hidden).sort((a, b) => this.compare(a, b));
  }

  /** Students in the order shown (for previous/next in the focus view). */
  order() {
    return this.visibleTiles().map((tile) => tile.student.id);
  }

  apply() {
    const ordered = [...this.tiles.values()].sort((a, b) => this.compare(a, b));
    let shown = 0;
    for (const tile of ordered) {
      const visible = this.matches(tile);
      tile.root.hidden = !visible;
      if (visible) shown += 1;
    }
    const current = [...this.list.children];
    if (current.length !== ordered.length || current.some((node, i) => node !== ordered[i].root)) {
      const focused = document.activeElement;
      this.list.replaceChildren(...ordered.map((tile) => tile.root));
      if (focused && this.list.contains(focused)) focused.focus();
    }
    this.onCount?.(shown, this.tiles.size);
  }

  columns() {
    const template = window.getComputedStyle(this.list).gridTemplateColumns;
    return Math.max(1, template.split(" ").filter(Boolean).length);
  }

  onKey(event) {
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: this.columns(), ArrowUp: -this.columns() };
    const tiles = this.visibleTiles();
    const index = tiles.findIndex((tile) => tile.button === document.activeElement);
    if (index < 0) return;
    let next = null;
    if (event.key in moves) next = index + moves[event.key];
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = tiles.length - 1;
    if (next === null) return;
    event.preventDefault();
    tiles[Math.max(0, Math.min(tiles.length - 1, next))].button.focus();
  }
}
