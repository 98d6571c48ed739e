// IT's location screen: list and edit locations, switch remote-lesson mode, get the letter.
// Every change goes to /api/admin/locations with the session's CSRF token.

const $ = (id) => document.getElementById(id);
let csrf = "";
let state = { locations: [], remote_mode_max_hours: 0 };
let current = null; // the location whose remote-lesson panel is open

function show(text, ok = false) {
  $("message").textContent = text;
  $("message").classList.toggle("is-ok", ok);
}

async function call(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["X-CSRF-Token"] = csrf;
    init.referrerPolicy = "same-origin";
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  if (response.status === 401) {
    window.location.assign("/signin");
    throw new Error("signed out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error?.message || `HTTP ${response.status}`);
  return data;
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

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "admin-button admin-quiet";
  b.textContent = text;
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
    cell(row, loc.networks.length ? loc.networks : "none: nobody is on-site here");
    cell(row, loc.lesson_hours ? `${loc.lesson_hours} (${loc.timezone})` : "any time");
    if (loc.remote_mode) cell(row, `on until ${loc.remote_mode.until_local}`, "admin-on");
    else cell(row, "off");
    const actions = cell(row, "");
    actions.append(button("Edit", () => edit(loc)), " ", button("Remote-lesson mode", () => remote(loc)));
    body.append(row);
  }
  $("remote-max").textContent = `At most ${state.remote_mode_max_hours} hours from now (school policy).`;
  if (current) remote(state.locations.find((l) => l.id === current.id) || null);
}

async function load() {
  state = await call("GET", "/api/admin/locations");
  $("school-name").textContent = state.school ? `${state.school.name} (${state.school.brin})` : "your school";
  const here = state.locations.find((l) => l.id === state.your_location_id);
  $("whereami").textContent = `Your address as the server sees it: ${state.your_address} — ${
    here ? `at ${here.name}` : "not at any location"}.`;
  render();
}

function edit(loc) {
  const form = $("edit-form");
  form.reset();
  form.elements.id.value = loc ? loc.id : "";
  form.elements.name.value = loc ? loc.name : "";
  form.elements.code.value = loc ? loc.code : (state.school ? state.school.brin : "");
  form.elements.networks.value = loc ? loc.networks.join("\n") : "";
  form.elements.lesson_hours.value = loc ? loc.lesson_hours : "";
  form.elements.timezone.value = loc ? loc.timezone : "Europe/Amsterdam";
  $("edit-title").textContent = loc ? `Edit ${loc.name}` : "New location";
  $("edit").hidden = false;
  form.elements.name.focus();
}

function remote(loc) {
  current = loc;
  if (!loc) {
    $("remote").hidden = true;
    return;
  }
  $("remote-title").textContent = `Remote-lesson mode · ${loc.name}`;
  const on = loc.remote_mode;
  $("remote-on").hidden = !on;
  if (on) {
    $("remote-state").textContent =
      `On until ${on.until_local}, switched on by ${on.started_by}. Reason: ${on.reason}`;
    $("letter-nl").href = on.letter.nl;
    $("letter-en").href = on.letter.en;
  }
  $("remote-form").querySelector("button[type=submit]").textContent = on ? "Change end time" : "Switch on";
  $("remote").hidden = false;
}

$("new-location").addEventListener("click", () => edit(null));
$("edit-cancel").addEventListener("click", () => { $("edit").hidden = true; });
$("remote-cancel").addEventListener("click", () => { current = null; $("remote").hidden = true; });

$("edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
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
    show(`Saved ${saved.name}.`, true);
    $("edit").hidden = true;
    await load();
  } catch (err) {
    show(err.message);
  }
});

$("remote-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!current) return;
  const f = event.target.elements;
  try {
    await call("POST", `/api/admin/locations/${current.id}/remote-mode`, { until: f.until.value, reason: f.reason.value });
    show(`Remote-lesson mode is on for ${current.name}. Download the letter to parents below.`, true);
    await load();
  } catch (err) {
    show(err.message);
  }
});

$("remote-end").addEventListener("click", async () => {
  if (!current) return;
  try {
    await call("DELETE", `/api/admin/locations/${current.id}/remote-mode`);
    show(`Remote-lesson mode of ${current.name} has ended.`, true);
    await load();
  } catch (err) {
    show(err.message);
  }
});

async function start() {
  try {
    const me = await call("GET", "/api/me");
    csrf = me.csrf_token;
    $("user-name").textContent = me.user.name;
    for (const notice of me.notices || []) {
      const box = document.createElement("div");
      box.className = `admin-notice admin-notice-${String(notice.kind || "info").replace(/[^a-z0-9_-]/gi, "")}`;
      box.textContent = notice.text || "";
      $("notices").append(box);
    }
    await load();
  } catch (err) {
    show(err.message);
  }
}

start();
