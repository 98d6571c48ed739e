// The teacher's page: who is signed in, the class picker, the live grid and focus view.
import { ApiError, getMe, signOut, thumbnailUrl } from "./api.js";
import { FocusView } from "./focus.js";
import { Grid } from "./grid.js";
import { codeText, lang, t, translatePage } from "./i18n.js";
import { LiveConnection } from "./live.js";

const SIGNIN = "/signin";
/** Class-wide states: one banner each, never a message on every tile. */
const BLOCKING = new Set(["elsewhere", "outside_lesson_hours"]);
const BANNER_KINDS = new Set(["remote_mode", "elsewhere", "outside_lesson_hours"]);
/** How often a grid refused for a class-wide reason asks again. */
const RETRY_BLOCKED_MS = 5000;

const page = {
  me: null,
  classId: null,
  subscribed: null, // class id the server has us subscribed to on this connection
  generation: 0, // bumps on each class switch, so late answers are ignored
  hidden: false, // the tab is hidden: nothing is watched
  banners: new Map(), // kind -> notice (from /api/me and from refusals)
  signingOut: false,
  derived: null, // a banner kind shown because every tile says it
  retryAt: null, // when to ask again after a class-wide refusal
};

const $ = (id) => document.getElementById(id);

function goToSignin(reason) {
  window.location.assign(reason ? `${SIGNIN}?reason=${encodeURIComponent(reason)}` : SIGNIN);
}

function setMessage(text) {
  const box = $("grid-message");
  box.textContent = text || "";
  box.hidden = !text;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function safeKind(kind) {
  return String(kind || "info").replace(/[^a-z0-9_-]/gi, "");
}

/** A server notice in the reader's language: worded by its kind and parameters. */
function noticeText(notice) {
  const kind = safeKind(notice.kind);
  if (kind === "remote_mode") {
    const until = Date.parse(notice.until || "");
    const time = Number.isFinite(until)
      ? new Date(until).toLocaleString(lang === "nl" ? "nl-NL" : "en-GB", {
          weekday: "short",
          day: "numeric",
          month: "short",
          hour: "2-digit",
          minute: "2-digit",
        })
      : "?";
    return t("banner.remote_mode", { location: notice.location || "?", until: time });
  }
  if (`banner.${kind}` in { "banner.elsewhere": 1, "banner.outside_lesson_hours": 1, "banner.demo": 1 }) {
    return t(`banner.${kind}`);
  }
  return t("banner.info");
}

function showNotice(notice) {
  const kind = safeKind(notice.kind);
  const box = el("div", `notice notice-${kind}`);
  box.dataset.kind = kind;
  box.setAttribute("role", kind === "error" || kind === "warning" ? "alert" : "status");
  const text = el("span", "notice-text", noticeText(notice));
  const close = el("button", "button button-quiet notice-close", t("notice.close"));
  close.type = "button";
  close.addEventListener("click", () => box.remove());
  box.append(text, close);
  $("notices").append(box);
}

/** The class-wide banners: one per kind, whatever sent it (page load or a refusal). */
function renderBanners() {
  const boxes = [];
  for (const [kind, notice] of page.banners) {
    const box = el("div", `banner banner-${kind}`);
    box.dataset.kind = kind;
    box.setAttribute("role", BLOCKING.has(kind) ? "alert" : "status");
    box.append(el("p", "banner-text", noticeText(notice)));
    boxes.push(box);
  }
  $("banners").replaceChildren(...boxes);
  renderLiveStatus();
}

/** Every tile hidden for the same class-wide reason: say it once, in a banner. */
function syncDerivedBanner() {
  const code = grid.commonBlock();
  if (code === page.derived) return;
  if (page.derived !== null && page.banners.get(page.derived)?.derived) page.banners.delete(page.derived);
  page.derived = code;
  if (code !== null && !page.banners.has(code)) page.banners.set(code, { kind: code, derived: true });
  renderBanners();
}

function blocked() {
  return [...page.banners.keys()].some((kind) => BLOCKING.has(kind));
}

let liveState = { state: "connecting", detail: {} };

/** The header's status (a live region): text written only when it changes. */
const liveBox = {
  el: document.getElementById("live-status"),
  set textContent(text) {
    if (this.el.textContent !== text) this.el.textContent = text;
  },
  get dataset() {
    return this.el.dataset;
  },
};

/** The header's live status and the grid overlay: green "Live" only when it is true. */
function renderLiveStatus() {
  const box = liveBox;
  const { state, detail } = liveState;
  const overlay = $("grid-overlay");
  let overlayText = "";
  if (page.hidden) {
    box.dataset.state = "paused";
    box.textContent = t("grid.paused");
    overlayText = t("grid.overlayPaused");
  } else if (state === "open" && blocked()) {
    box.dataset.state = "blocked";
    box.textContent = t("grid.blocked");
  } else if (state === "open") {
    box.dataset.state = "open";
    box.textContent = t("grid.live");
  } else if (state === "stopped") {
    box.dataset.state = "stopped";
    box.textContent = t("grid.stopped", { message: codeText(detail.code) });
  } else {
    box.dataset.state = state;
    box.textContent = state === "waiting" ? t("grid.reconnecting", { seconds: detail.seconds }) : t("grid.connecting");
    if (page.subscribed !== null || grid.tiles.size > 0) overlayText = t("grid.overlayNotLive");
  }
  if ($("grid-overlay-text").textContent !== overlayText) $("grid-overlay-text").textContent = overlayText;
  overlay.hidden = !overlayText;
  $("main").classList.toggle("is-not-live", Boolean(overlayText));
  grid.setConnected(state === "open" && !page.hidden);
}

function classFromHash() {
  const match = /(?:^#|&)class=(\d+)/.exec(window.location.hash);
  return match ? Number(match[1]) : null;
}

function pickClass() {
  const classes = page.me.classes;
  const wanted = classFromHash();
  if (wanted !== null && classes.some((c) => c.id === wanted)) return wanted;
  return classes.length > 0 ? classes[0].id : null;
}

function setInert(on) {
  for (const id of ["main", "notices", "banners"]) $(id).inert = on;
  document.querySelector(".topbar").inert = on;
}

const grid = new Grid($("grid"), openFocus);
grid.onCount = (shown, total) => {
  const count = total > 0 ? t("tools.count", { shown, total }) : "";
  // A live region: written only when it changes, so it is not read out every second.
  if ($("tool-count").textContent !== count) $("tool-count").textContent = count;
  if (total > 0 && shown === 0) setMessage(t("tools.noMatch"));
  else if ($("grid-message").textContent === t("tools.noMatch")) setMessage("");
};

const focus = new FocusView(
  (studentId) => {
    setInert(false);
    live.command("unfocus", { student_id: studentId }).catch(() => {});
  },
  (studentId, step) => {
    const order = grid.order();
    const index = order.indexOf(studentId);
    if (order.length < 2 || index < 0) return;
    const next = order[(index + step + order.length) % order.length];
    live.command("unfocus", { student_id: studentId }).catch(() => {});
    openFocus(next, null, { keepFocus: true });
  },
  () => ({ connected: grid.connected, intervalMs: grid.intervalMs }),
);

const live = new LiveConnection({
  onOpen: () => {
    page.subscribed = null;
    if (!page.hidden) subscribe(page.classId, { refocus: true });
  },
  onEvent: handleEvent,
  onFrame: (frame) => {
    grid.showFrame(frame);
    focus.showFrame(frame);
  },
  onState: (state, detail = {}) => {
    liveState = { state, detail };
    if (state === "stopped") {
      focus.hide();
      setInert(false);
      if (detail.code === "session_ended" && !page.signingOut) goToSignin("session_ended");
    }
    renderLiveStatus();
  },
  beforeReconnect: async () => {
    try {
      await getMe();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        goToSignin("session_ended");
        return false;
      }
    }
    return true;
  },
});

function handleEvent(msg) {
  switch (msg.type) {
    case "status":
      grid.updateState(msg.student_id, msg.state || {});
      focus.updateState(msg.student_id, msg.state || {});
      break;
    case "tabs":
      grid.updateTabs(msg.student_id, msg.tabs || []);
      focus.updateTabs(msg.student_id, msg.tabs || []);
      break;
    case "notice":
      if (msg.notice) showNotice(msg.notice);
      break;
    case "closed":
      liveState = { state: "stopped", detail: { code: msg.error?.code } };
      renderLiveStatus();
      break;
    default:
      break;
  }
}

async function subscribe(classId, { refocus = false } = {}) {
  if (classId === null || !live.isOpen || page.hidden) return;
  const generation = page.generation;
  const focusedId = refocus ? focus.studentId : null;
  let result;
  try {
    result = await live.command("subscribe", { class_id: classId });
  } catch (err) {
    if (generation !== page.generation) return;
    if (err.code !== "disconnected") {
      grid.clear();
      if (BLOCKING.has(err.code)) {
        // Class-wide: the banner says it once (also when /api/me already did); tried
        // again now and then, so the grid comes back by itself (at school, next lesson).
        page.retryAt = Date.now() + RETRY_BLOCKED_MS;
        page.banners.set(err.code, { kind: err.code });
        renderBanners();
        setMessage("");
      } else {
        setMessage(t("grid.refused", { message: codeText(err.code) }));
      }
    }
    return;
  }
  if (generation !== page.generation || page.hidden) {
    live.command("unsubscribe", { class_id: classId }).catch(() => {});
    return;
  }
  page.subscribed = classId;
  page.retryAt = null;
  let changed = false;
  page.derived = null;
  for (const kind of BLOCKING) changed = page.banners.delete(kind) || changed;
  if (changed) renderBanners();
  if (result.grid && Number.isFinite(result.grid.interval_ms)) grid.intervalMs = result.grid.interval_ms;
  const students = result.students || [];
  grid.render(students, thumbnailUrl);
  setMessage(students.length === 0 ? t("grid.empty") : "");
  renderLiveStatus();
  if (focusedId !== null) {
    if (grid.student(focusedId)) sendFocus(focusedId);
    else {
      focus.hide();
      setInert(false);
    }
  }
}

async function switchClass(classId) {
  if (classId === page.classId) return;
  page.generation += 1;
  if (focus.isOpen) {
    const id = focus.studentId;
    focus.hide();
    setInert(false);
    live.command("unfocus", { student_id: id }).catch(() => {});
  }
  const previous = page.subscribed;
  page.classId = classId;
  page.subscribed = null;
  $("class-select").value = String(classId);
  grid.clear();
  setMessage(t("grid.loading"));
  if (previous !== null) live.command("unsubscribe", { class_id: previous }).catch(() => {});
  await subscribe(classId);
}

function openFocus(studentId, _opener, options = {}) {
  const student = grid.student(studentId);
  if (!student) return;
  // Focus goes back to the tile of whoever is shown when the view closes.
  focus.open(student, () => grid.tileButton(focus.lastStudentId ?? studentId), options);
  focus.lastStudentId = studentId;
  const order = grid.order();
  focus.setPosition(order.indexOf(studentId) + 1, order.length);
  setInert(true);
  sendFocus(studentId);
}

async function sendFocus(studentId) {
  try {
    const result = await live.command("focus", { student_id: studentId });
    if (result.student) focus.setStudent(result.student);
  } catch (err) {
    if (err.code !== "disconnected" && focus.studentId === studentId) focus.showError(codeText(err.code));
  }
}

/** A hidden tab watches nothing: unsubscribe (agents go quiet), resubscribe on return. */
function onVisibility() {
  const hidden = document.visibilityState === "hidden";
  if (hidden === page.hidden) return;
  page.hidden = hidden;
  if (hidden) {
    page.generation += 1;
    if (focus.isOpen) live.command("unfocus", { student_id: focus.studentId }).catch(() => {});
    if (page.subscribed !== null) live.command("unsubscribe", { class_id: page.subscribed }).catch(() => {});
    page.subscribed = null;
  } else {
    page.generation += 1;
    subscribe(page.classId, { refocus: true });
  }
  renderLiveStatus();
}

function setUpTools() {
  const search = $("tool-search");
  search.addEventListener("input", () => grid.setOption("search", search.value.trim()));
  for (const name of ["sort", "filter", "size"]) {
    const select = $(`tool-${name}`);
    select.value = grid.options[name];
    select.addEventListener("change", () => grid.setOption(name, select.value));
  }
  $("tools").addEventListener("submit", (event) => event.preventDefault());
}

function renderHeader(me) {
  $("admin-links").hidden = !me.user.is_admin;
  $("user-name").textContent = me.user.name;
  $("user-name").title = t("header.user", { name: me.user.username || me.user.name });
  const marker = $("demo-marker");
  marker.textContent = t("header.demo");
  marker.title = t("header.demoTitle");
  marker.hidden = !me.demo;
  const select = $("class-select");
  select.replaceChildren(
    ...me.classes.map((c) => {
      const option = el("option", "", `${c.name} (${c.student_count})`);
      option.value = String(c.id);
      return option;
    }),
  );
  select.disabled = me.classes.length === 0;
  select.addEventListener("change", () => {
    window.location.hash = `class=${select.value}`;
  });
  $("signout").addEventListener("click", async () => {
    const button = $("signout");
    button.disabled = true;
    page.signingOut = true; // our own sign-out: the server's "session ended" is no news
    try {
      await signOut(me.csrf_token);
    } catch (err) {
      page.signingOut = false;
      button.disabled = false;
      showNotice({ kind: "error", text: t("header.signoutFailed", { status: err.status ?? err.message }) });
      return;
    }
    live.stop("signed_out");
    goToSignin();
  });
  for (const notice of me.notices || []) {
    if (BANNER_KINDS.has(notice.kind)) page.banners.set(notice.kind, notice);
    else showNotice(notice);
  }
  renderBanners();
}

function setUpLanguageSwitch() {
  const link = $("lang-switch");
  const other = lang === "nl" ? "en" : "nl";
  link.textContent = t("header.language");
  link.lang = other;
  link.setAttribute("aria-label", t("header.languageLabel"));
  link.href = `?lang=${other}${window.location.hash}`;
}

async function main() {
  translatePage();
  setUpLanguageSwitch();
  setUpTools();
  try {
    page.me = await getMe();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      goToSignin();
      return;
    }
    setMessage(t("grid.meFailed", { status: err.status ?? err.message }));
    return;
  }
  renderHeader(page.me);
  page.classId = pickClass();
  if (page.classId === null) {
    setMessage(t("grid.noClasses"));
    return;
  }
  $("class-select").value = String(page.classId);
  if (classFromHash() !== page.classId) {
    window.history.replaceState(null, "", `${window.location.search}#class=${page.classId}`);
  }
  window.addEventListener("hashchange", () => {
    const wanted = classFromHash();
    if (wanted !== null && page.me.classes.some((c) => c.id === wanted)) switchClass(wanted);
  });
  document.addEventListener("visibilitychange", onVisibility);
  page.hidden = document.visibilityState === "hidden";
  // Picture ages and "last picture" labels move on by themselves, once a second.
  window.setInterval(() => {
    grid.refresh();
    focus.renderState();
    syncDerivedBanner();
    if (page.retryAt !== null && Date.now() >= page.retryAt && page.subscribed === null && live.isOpen) {
      page.retryAt = null;
      subscribe(page.classId);
    }
  }, 1000);
  live.start();
}

main();
