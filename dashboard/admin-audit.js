// The audit log page for IT: filters, pages of 100 (newest first), CSV download link.
"use strict";

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

async function load(append) {
  const params = query({ limit: "100" });
  if (append && nextBefore !== null) params.set("before_id", String(nextBefore));
  csv.href = "/api/admin/audit.csv?" + query().toString();
  statusLine.textContent = "Loading…";
  let answer;
  try {
    answer = await fetch("/api/admin/audit?" + params.toString(), { credentials: "same-origin" });
  } catch (err) {
    statusLine.textContent = "The server cannot be reached.";
    return;
  }
  const data = await answer.json();
  if (!answer.ok) {
    statusLine.textContent = (data.error && data.error.message) || "Request refused.";
    return;
  }
  if (!append) body.replaceChildren();
  for (const e of data.entries) {
    const tr = document.createElement("tr");
    const detail = cell(e.detail);
    detail.className = "audit-detail";
    tr.append(cell(e.at), cell(e.actor), cell(e.action), cell(e.subject), detail, cell(e.ip));
    body.append(tr);
  }
  nextBefore = data.next_before_id;
  more.hidden = nextBefore === null;
  statusLine.textContent = body.children.length ? "" : "No entries match.";
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  nextBefore = null;
  load(false);
});
more.addEventListener("click", () => load(true));
load(false);
