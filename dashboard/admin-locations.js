// IT's location screen: list and edit locations, switch remote-lesson mode, get the letter.
// Every change goes to /api/admin/locations with the session's CSRF token. A refusal is
// shown next to the field it is about (aria-invalid), in the reader's language.
import { AdminError, call, errorText, startAdminPage } from "./admin-common.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
let state = { locations: [], remote_mode_max_hours: 0 };
let current = null; // the location whose remote-lesson panel is open

/** Which form field a server error code is about. */
const FIELD_OF_CODE = Object.freeze({
  invalid_code: "code",
  duplicate_code: "code",
  invalid_network: "networks",
  overlapping_networks: "networks",
  invalid_lesson_hours: "lesson_hours",
  invalid_timezone: "timezone",
  invalid_until: "until",
});

function show(text, ok = false) {
  $("message").textContent = text;
  $("message").classList.toggle("is-ok", ok);
}

function fieldOf(err, form) {
  if (err.field && form.elements[err.field]) return err.field;
  if (FIELD_OF_CODE[err.code] && form.elements[FIELD_OF_CODE[err.code]]) return FIELD_OF_CODE[err.code];
  const first = /^(\w+)/.exec(err.message || "");
  if (err.code === "invalid_format" && first && form.elements[first[1]]) return first[1];
  return null;
}

function clearErrors(form) {
  for (const box of form.querySelectorAll(".field-error")) {
    box.hidden = true;
    box.textContent = "";
  }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function fieldError(form, name, text) {
  const input = form.elements[name];
  const box = $(`error-${name}`);
  input.setAttribute("aria-invalid", "true");
  box.textContent = text;
  box.hidden = false;
  input.focus();
}

/** Show a refusal next to its field, or at the top when it is about no field. */
function refused(form, err) {
  const name = err instanceof AdminError ? fieldOf(err, form) : null;
  const text = errorText(err);
  if (name) {
    fieldError(form, name, text);
    show("");
  } else {
    show(t("admin.failed", { reason: text }));
  }
}

function requireFields(form, names) {
  let ok = true;
  for (const name of names.slice().reverse()) {
    if (!form.elements[name].value.trim()) {
      fieldError(form, name, t("admin.required"));
      ok = false;
    }
  }
  return ok;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (Array.isArray(text)) {
    for (const line of text) {
      const code = document.createElement("code");
      code.textContent = line;
      td.append(code);
    }
  } else {
    td.textContent = text;
  }
  row.append(td);
  return td;
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "admin-button admin-quiet";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function render() {
  const body = $("locations");
  body.replaceChildren();
  for (const loc of state.locations) {
    const row = document.createElement("tr");
    cell(row, loc.name);
    cell(row, loc.code);
    cell(row, loc.networks.length ? loc.networks : t("admin.loc.noNetworks"));
    cell(row, loc.lesson_hours ? `${loc.lesson_hours} (${loc.timezone})` : t("admin.loc.anyTime"));
    if (loc.remote_mode) cell(row, t("admin.loc.onUntil", { until: loc.remote_mode.until_local }), "admin-on");
    else cell(row, t("admin.loc.off"));
    const actions = cell(row, "");
    actions.append(
      button(t("admin.loc.edit"), t("admin.loc.editOf", { name: loc.name }), () => edit(loc)),
      " ",
      button(t("admin.loc.remote"), t("admin.loc.remoteOf", { name: loc.name }), () => remote(loc)),
    );
    body.append(row);
  }
  $("remote-max").textContent = t("admin.remote.max", { hours: state.remote_mode_max_hours });
  if (current) remote(state.locations.find((l) => l.id === current.id) || null);
}

async function refreshNotices() {
  // The banners follow the switch at once (remote-lesson mode on or off).
  const me = await call("GET", "/api/me");
  const boxes = (me.notices || [])
    .filter((notice) => notice.kind !== "demo")
    .map((notice) => {
      const box = document.createElement("div");
      const kind = String(notice.kind || "info").replace(/[^a-z0-9_-]/gi, "");
      box.className = `admin-notice admin-notice-${kind}`;
      box.dataset.kind = kind;
      box.textContent =
        kind === "remote_mode"
          ? t("admin.notice.remote_mode", { location: notice.location || "?" })
          : t(`banner.${kind}` in { "banner.elsewhere": 1, "banner.outside_lesson_hours": 1 } ? `banner.${kind}` : "banner.info");
      return box;
    });
  $("notices").replaceChildren(...boxes);
}

async function load() {
  state = await call("GET", "/api/admin/locations");
  $("list-title").textContent = state.school
    ? t("admin.loc.titleOf", { school: `${state.school.name} (${state.school.brin})` })
    : t("admin.loc.title");
  const here = state.locations.find((l) => l.id === state.your_location_id);
  $("whereami").textContent = here
    ? t("admin.loc.whereAt", { address: state.your_address, name: here.name })
    : t("admin.loc.whereNone", { address: state.your_address });
  render();
  await refreshNotices();
}

function edit(loc) {
  const form = $("edit-form");
  form.reset();
  clearErrors(form);
  form.elements.id.value = loc ? loc.id : "";
  form.elements.name.value = loc ? loc.name : "";
  form.elements.code.value = loc ? loc.code : state.school ? state.school.brin : "";
  form.elements.networks.value = loc ? loc.networks.join("\n") : "";
  form.elements.lesson_hours.value = loc ? loc.lesson_hours : "";
  form.elements.timezone.value = loc ? loc.timezone : "Europe/Amsterdam";
  $("edit-title").textContent = loc ? t("admin.loc.editOf", { name: loc.name }) : t("admin.loc.new");
  $("edit").hidden = false;
  form.elements.name.focus();
}

function remote(loc) {
  current = loc;
  if (!loc) {
    $("remote").hidden = true;
    return;
  }
  $("remote-title").textContent = t("admin.remote.titleOf", { name: loc.name });
  const on = loc.remote_mode;
  $("remote-on").hidden = !on;
  $("remote-confirm").hidden = true;
  $("remote-end").hidden = false;
  if (on) {
    $("remote-state").textContent = t("admin.remote.state", {
      until: on.until_local,
      by: on.started_by,
      reason: on.reason,
    });
    $("letter-nl").href = on.letter.nl;
    $("letter-en").href = on.letter.en;
  }
  $("remote-form").querySelector("button[type=submit]").textContent = on ? t("admin.remote.change") : t("admin.remote.on");
  $("remote").hidden = false;
}

$("new-location").addEventListener("click", () => edit(null));
$("edit-cancel").addEventListener("click", () => {
  $("edit").hidden = true;
});
$("remote-cancel").addEventListener("click", () => {
  current = null;
  $("remote").hidden = true;
});

$("edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const f = form.elements;
  clearErrors(form);
  if (!requireFields(form, ["name", "code"])) return;
  const body = {
    name: f.name.value,
    code: f.code.value,
    networks: f.networks.value.split(/[\s,]+/).filter(Boolean),
    lesson_hours: f.lesson_hours.value,
    timezone: f.timezone.value,
  };
  if (f.id.value) body.id = Number(f.id.value);
  try {
    const saved = await call("POST", "/api/admin/locations", body);
    show(t("admin.loc.saved", { name: saved.name }), true);
    $("edit").hidden = true;
    await load();
  } catch (err) {
    refused(form, err);
  }
});

$("remote-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const form = event.target;
  const f = form.elements;
  clearErrors(form);
  if (!requireFields(form, ["until", "reason"])) return;
  try {
    await call("POST", `/api/admin/locations/${current.id}/remote-mode`, { until: f.until.value, reason: f.reason.value });
    show(t("admin.remote.isOn", { name: current.name }), true);
    await load();
  } catch (err) {
    refused(form, err);
  }
});

$("remote-end").addEventListener("click", () => {
  if (!current) return;
  $("remote-confirm-text").textContent = t("admin.remote.endQuestion", { name: current.name });
  $("remote-confirm").hidden = false;
  $("remote-end").hidden = true;
  $("remote-end-keep").focus();
});
$("remote-end-keep").addEventListener("click", () => {
  $("remote-confirm").hidden = true;
  $("remote-end").hidden = false;
  $("remote-end").focus();
});
$("remote-end-confirm").addEventListener("click", async () => {
  if (!current) return;
  try {
    await call("DELETE", `/api/admin/locations/${current.id}/remote-mode`);
    show(t("admin.remote.ended", { name: current.name }), true);
    await load();
  } catch (err) {
    show(t("admin.failed", { reason: errorText(err) }));
  }
});

async function start() {
  try {
    await startAdminPage();
    await load();
  } catch (err) {
    show(t("admin.failed", { reason: errorText(err) }));
  }
}

start();
