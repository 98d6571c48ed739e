// The options page: a read-only view of the status the service worker publishes, in the
// browser's language (_locales). Reasons from the server or Chrome stay as they came.
import { msg, translatePage } from "./i18n.js";

translatePage();

function text(id, value, cls = "") {
  const el = document.getElementById(id);
  el.textContent = value;
  el.className = cls;
}

function render(status) {
  if (!status) {
    text("configured", msg("starting"));
    return;
  }
  text(
    "configured",
    status.configured ? msg("yesServer", status.server) : msg("noReason", status.configError || msg("noManaged")),
  );
  text("account", status.account || msg("noAccount"));
  if (!status.configured) {
    text("connected", msg("notConfiguredLong"));
  } else if (status.connected) {
    text("connected", status.displayName ? msg("yesAs", status.displayName) : msg("yes"));
  } else {
    const next = status.nextAttemptAt ? msg("nextTry", new Date(status.nextAttemptAt).toLocaleTimeString()) : "";
    text("connected", `${status.lastError ? msg("noError", status.lastError) : msg("no")}${next}`);
  }
  if (status.connected && status.mode !== "off") {
    const who = status.viewers.length ? status.viewers.join(", ") : msg("aTeacher");
    text("watched", msg("watchedBy", who, msg(status.mode === "focus" ? "closeUp" : "overview")), "watched");
  } else {
    text("watched", msg("no"));
  }
  text("detail", status.lastCaptureError ? msg("lastCapture", status.lastCaptureError) : "");
}

chrome.storage.session.get("status").then(({ status }) => render(status));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "session" && changes.status) render(changes.status.newValue);
});
