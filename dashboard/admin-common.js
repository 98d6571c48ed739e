// What every IT admin page shares: the header (links between the pages, the dashboard,
// the language switch, who is signed in, sign-out), the JSON calls with the CSRF token,
// and the words for server error codes.
import { signOut } from "./api.js";
import { hasText, lang, t, translatePage } from "./i18n.js";

const $ = (id) => document.getElementById(id);

/** An API refusal: HTTP status, the server's code, and which form field it is about. */
export class AdminError extends Error {
  constructor(status, code, message, field) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

let csrf = "";

export async function call(method, url, body) {
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
    window.location.assign("/signin?reason=session_ended");
    throw new AdminError(401, "not_authenticated", "signed out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new AdminError(response.status, error.code || "unknown", error.message, error.field);
  }
  return data;
}

/** The words for an admin API error, in the reader's language. */
export function errorText(err) {
  const code = err && err.code ? err.code : "unknown";
  if (hasText(`admin.code.${code}`)) return t(`admin.code.${code}`);
  if (hasText(`code.${code}`)) return t(`code.${code}`);
  return t("code.unknown", { code });
}

/** Local date and time of an ISO timestamp, in the reader's language. */
export function localTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso || "";
  return when.toLocaleString(lang === "nl" ? "nl-NL" : "en-GB", {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** Translate the page, fill the header; returns /api/me (or throws AdminError). */
export async function startAdminPage() {
  translatePage();
  const other = lang === "nl" ? "en" : "nl";
  const link = $("lang-switch");
  link.textContent = t("header.language");
  link.lang = other;
  link.setAttribute("aria-label", t("header.languageLabel"));
  link.href = `?lang=${other}`;
  const me = await call("GET", "/api/me");
  csrf = me.csrf_token;
  $("user-name").textContent = me.user.name;
  $("signout").addEventListener("click", async () => {
    try {
      await signOut(csrf);
    } finally {
      window.location.assign("/signin");
    }
  });
  return me;
}
