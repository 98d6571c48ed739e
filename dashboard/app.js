// The teacher's page: who is signed in, the class picker, the live grid and focus view.
import { ApiError, getMe, signOut } from "./api.js";
import { FocusView } from "./focus.js";
import { Grid } from "./grid.js";
import { t, translatePage } from "./i18n.js";
import { LiveConnection } from "./live.js";

const SIGNIN = "/signin";

const page = {
  me: null,
  classId: null,
  subscribed: null, // class id the server has us subscribed to on this connection
  generation: 0, // bumps on each class switch, so late answers are ignored
};

const $ = (id) => document.getElementById(id);

function goToSignin() {
  window.location.assign(SIGNIN);
}

function setMessage(text) {
  const box = $("grid-message");
  box.textContent = text || "";
  box.hidden = !text;
}

function showNotice(notice) {
  const box = el("div", `notice notice-${String(notice.kind || "info").replace(/[^a-z0-9_-]/gi, "")}`);
  box.setAttribute("role", notice.kind === "error" || notice.kind === "warning" ? "alert" : "status");
  const text = el("span", "notice-text", notice.text || "");
  const close = el("button", "button button-quiet notice-close", t("notice.close"));
  close.type = "button";
  close.addEventListener("click", () => box.remove());
  box.append(text, close);
  $("notices").append(box);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
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
  for (const id of ["main", "notices"]) $(id).inert = on;
  document.querySelector(".topbar").inert = on;
}

const focus = new FocusView((studentId) => {
  setInert(false);
  live.command("unfocus", { student_id: studentId }).catch(() => {});
});

const grid = new Grid($("grid"), openFocus);

const live = new LiveConnection({
  onOpen: () => {
    page.subscribed = null;
    subscribe(page.classId, { refocus: true });
  },
  onEvent: handleEvent,
  onFrame: (frame) => {
    grid.showFrame(frame);
    focus.showFrame(frame);
  },
  onState: (state, detail) => {
    const box = $("live-status");
    box.dataset.state = state;
    if (state === "open") box.textContent = t("grid.live");
    else if (state === "connecting") box.textContent = t("grid.connecting");
    else if (state === "waiting") box.textContent = t("grid.reconnecting", { seconds: detail.seconds });
    else if (state === "stopped") {
      box.textContent = t("grid.stopped", { message: detail.message || detail.code });
      focus.hide();
      setInert(false);
    }
  },
  beforeReconnect: async () => {
    try {
      await getMe();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        goToSignin();
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
      $("live-status").textContent = t("grid.stopped", { message: msg.error?.message || msg.error?.code || "" });
      break;
    default:
      break;
  }
}

async function subscribe(classId, { refocus = false } = {}) {
  if (classId === null || !live.isOpen) return;
  const generation = page.generation;
  const focusedId = refocus ? focus.studentId : null;
  let result;
  try {
    result = await live.command("subscribe", { class_id: classId });
  } catch (err) {
    if (generation !== page.generation) return;
    if (err.code !== "disconnected") {
      grid.clear();
      setMessage(t("grid.refused", { message: err.message }));
    }
    return;
  }
  if (generation !== page.generation) {
    live.command("unsubscribe", { class_id: classId }).catch(() => {});
    return;
  }
  page.subscribed = classId;
  const students = result.students || [];
  grid.render(students);
  setMessage(students.length === 0 ? t("grid.empty") : "");
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

function openFocus(studentId, opener) {
  const student = grid.student(studentId);
  if (!student) return;
  focus.open(student, opener);
  setInert(true);
  sendFocus(studentId);
}

async function sendFocus(studentId) {
  try {
    const result = await live.command("focus", { student_id: studentId });
    if (result.student) focus.setStudent(result.student);
  } catch (err) {
    if (err.code !== "disconnected" && focus.studentId === studentId) focus.showError(err.message);
  }
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
    try {
      await signOut(me.csrf_token);
    } catch (err) {
      button.disabled = false;
      showNotice({ kind: "error", text: t("header.signoutFailed", { status: err.status ?? err.message }) });
      return;
    }
    live.stop("signed_out");
    goToSignin();
  });
  for (const notice of me.notices || []) showNotice(notice);
}

async function main() {
  translatePage();
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
    window.history.replaceState(null, "", `#class=${page.classId}`);
  }
  window.addEventListener("hashchange", () => {
    const wanted = classFromHash();
    if (wanted !== null && page.me.classes.some((c) => c.id === wanted)) switchClass(wanted);
  });
  live.start();
}

main();
