// The options page: a read-only view of the status the service worker publishes.

function text(id, value, cls = "") {
  const el = document.getElementById(id);
  el.textContent = value;
  el.className = cls;
}

function render(status) {
  if (!status) {
    text("configured", "starting…");
    return;
  }
  text("configured", status.configured ? `yes (${status.server})` : `no: ${status.configError || "no managed configuration"}`);
  text("account", status.account || "no signed-in account");
  if (!status.configured) {
    text("connected", "no: the extension does nothing until the school's IT department configures it");
  } else if (status.connected) {
    text("connected", status.displayName ? `yes, as ${status.displayName}` : "yes");
  } else {
    const next = status.nextAttemptAt ? `; next try at ${new Date(status.nextAttemptAt).toLocaleTimeString()}` : "";
    text("connected", `no${status.lastError ? ` (${status.lastError})` : ""}${next}`);
  }
  if (status.connected && status.mode !== "off") {
    const who = status.viewers.length ? status.viewers.join(", ") : "a teacher";
    text("watched", `yes, by ${who} (${status.mode === "focus" ? "close-up" : "class overview"})`, "watched");
  } else {
    text("watched", "no");
  }
  text("detail", status.lastCaptureError ? `Last capture problem: ${status.lastCaptureError}` : "");
}

chrome.storage.session.get("status").then(({ status }) => render(status));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "session" && changes.status) render(changes.status.newValue);
});
