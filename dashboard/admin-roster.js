// The roster-sync page for IT: health (last success, age, last error, the app token's
// permissions) from GET /api/admin/roster, and "Sync now" (POST /api/admin/roster/sync).
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";

function hours(seconds) {
  if (seconds == null) return "never synced";
  return seconds < 3600 ? `${Math.round(seconds / 60)} minutes` : `${(seconds / 3600).toFixed(1)} hours`;
}

function list(items) {
  return items && items.length ? items.join(", ") : "none";
}

function show(h) {
  $("last-success").textContent = h.last_success || "never";
  $("age").textContent = hours(h.age_s);
  $("max-age").textContent = h.max_age_h ? `${h.max_age_h} hours` : "never (limit switched off)";
  const err = h.last_error;
  $("last-error").textContent = err ? `${err.at} · ${err.code}: ${err.message || ""}` : "none";
  const perms = h.permissions || {};
  if (perms.checked_at) {
    $("perm-needed").textContent = list(perms.needed);
    $("perm-missing").textContent = list(perms.missing);
    $("perm-superfluous").textContent = list(perms.superfluous);
  } else {
    $("perm-needed").textContent = "not checked yet (no app token so far)";
  }
  let verdict = "The roster follows Microsoft 365.";
  if (h.stale) verdict = "Viewing is refused: the roster has gone too long without a successful sync.";
  else if (h.failing) verdict = "The last sync failed; the roster is as the sync before left it.";
  else if (perms.missing && perms.missing.length) verdict = "Permissions are missing: the sync cannot read the roster.";
  $("verdict").textContent = verdict;
  $("verdict").dataset.state = h.stale || h.failing ? "bad" : "ok";
}

async function load() {
  let answer;
  try {
    answer = await fetch("/api/admin/roster", { credentials: "same-origin" });
  } catch (err) {
    $("verdict").textContent = "The server cannot be reached.";
    return null;
  }
  const data = await answer.json();
  if (!answer.ok) {
    $("verdict").textContent = (data.error && data.error.message) || "Request refused.";
    return null;
  }
  show(data);
  return data;
}

async function syncNow() {
  $("sync-now").disabled = true;
  $("sync-status").textContent = "Starting…";
  const before = await load();
  try {
    const answer = await fetch("/api/admin/roster/sync", {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
    });
    const data = await answer.json();
    if (!answer.ok) {
      $("sync-status").textContent = (data.error && data.error.message) || "Request refused.";
      return;
    }
    $("sync-status").textContent = "Sync running…";
    for (let i = 0; i < 120; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const now = await load();
      const changed = now && before && (now.last_success !== before.last_success ||
        JSON.stringify(now.last_error) !== JSON.stringify(before.last_error));
      if (changed) {
        $("sync-status").textContent = now.failing ? "The sync failed: see Last error." : "Sync done.";
        return;
      }
    }
    $("sync-status").textContent = "Still running; reload the page later.";
  } finally {
    $("sync-now").disabled = false;
  }
}

async function start() {
  const me = await fetch("/api/me", { credentials: "same-origin" });
  if (me.ok) csrf = (await me.json()).csrf_token || "";
  $("sync-now").addEventListener("click", syncNow);
  await load();
}

start();
