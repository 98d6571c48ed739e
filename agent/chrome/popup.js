// The toolbar popup: who is watching now, in the student's language, from the status the
// service worker publishes (the same one the options page shows).
import { msg, translatePage } from "./i18n.js";

export function popupText(status) {
  if (!status || !status.configured) return { text: msg("popupNotConfigured"), watched: false };
  if (!status.connected) return { text: msg("popupNotConnected"), watched: false };
  if (status.mode === "off") return { text: msg("popupNotWatched"), watched: false };
  const names = status.viewers.length ? status.viewers.join(", ") : msg("aTeacher");
  const key = status.mode === "focus" ? "popupWatchedClose" : "popupWatchedBy";
  return { text: msg(key, names), watched: true };
}

function render(status) {
  const { text, watched } = popupText(status);
  const box = document.getElementById("state");
  box.textContent = text;
  box.className = watched ? "watched" : "";
}

translatePage();
chrome.storage.session.get("status").then(({ status }) => render(status));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "session" && changes.status) render(changes.status.newValue);
});
