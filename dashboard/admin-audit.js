// The audit log page for IT: filters, pages of 100 (newest first), CSV download link.
// Times are shown in the reader's local time; subjects name the student, class or location.
import { call, errorText, localTime, startAdminPage } from "./admin-common.js";
import { t } from "./i18n.js";

const form = document.getElementById("filters");
const body = document.querySelector("#entries tbody");
const more = document.getElementById("more");
const statusLine = document.getElementById("status");
const csv = document.getElementById("csv");
let nextBefore = null;

function query(extra) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    if (value) params.set(key, value);
  }
  for (const [key, value] of Object.entries(extra || {})) params.set(key, value);
  return params;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
}

/** "Anna B. (student:5)": the name first, the stable id after it for searching. */
export function subjectText(entry) {
  return entry.subject_name ? `${entry.subject_name} (${entry.subject})` : entry.subject;
}

async function load(append) {
  const params = query({ limit: "100" });
  if (append && nextBefore !== null) params.set("before_id", String(nextBefore));
  csv.href = "/api/admin/audit.csv?" + query().toString();
  statusLine.textContent = t("grid.loading");
  let data;
  try {
    data = await call("GET", "/api/admin/audit?" + params.toString());
  } catch (err) {
    statusLine.textContent = t("admin.failed", { reason: errorText(err) });
    return;
  }
  if (!append) body.replaceChildren();
  for (const e of data.entries) {
    const tr = document.createElement("tr");
    const when = cell(localTime(e.at));
    when.title = e.at;
    const detail = cell(e.detail);
    detail.className = "audit-detail";
    detail.translate = false; // the server's record, kept as written
    detail.setAttribute("translate", "no");
    tr.append(when, cell(e.actor), cell(e.action), cell(subjectText(e)), detail, cell(e.ip));
    body.append(tr);
  }
  nextBefore = data.next_before_id;
  more.hidden = nextBefore === null;
  statusLine.textContent = body.children.length ? "" : t("admin.audit.none");
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  nextBefore = null;
  load(false);
});
more.addEventListener("click", () => load(true));

startAdminPage()
  .then(() => load(false))
  .catch((err) => {
    statusLine.textContent = t("admin.failed", { reason: errorText(err) });
  });
