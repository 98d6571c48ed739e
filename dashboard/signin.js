// The sign-in page: asks the server which sign-in methods it offers and shows them.
import { hasText, t, translatePage } from "./i18n.js";

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// Only the server's words: the URL carries a code, looked up here; any text in the URL
// (a "message", an unknown code) is never shown, so a link cannot put words on this page.
function errorKey(code) {
  for (const key of [`signin.code.${code}`, `signin.errors.${code}`, `code.${code}`]) {
    if (hasText(key)) return key;
  }
  return null;
}

function showError(params) {
  const code = params.get("error") || params.get("reason");
  if (!code) return;
  const key = errorKey(code);
  const box = document.getElementById("signin-error");
  box.textContent = t("signin.error", { message: t(key || "signin.errors.other") });
  box.dataset.code = key ? code : "other";
  box.hidden = false;
}

function demoForm() {
  const form = el("form", { method: "post", action: "/auth/demo", class: "signin-demo" });
  form.append(el("button", { type: "submit", class: "button button-demo", id: "demo-signin" }, t("signin.demo")));
  const admin = el("button", { type: "submit", class: "button button-demo", id: "demo-signin-admin", name: "who", value: "admin" }, t("signin.demoAdmin"));
  form.append(admin);
  form.append(el("p", { class: "muted small" }, t("signin.demoNote")));
  return form;
}

function microsoftLink() {
  return el("a", { href: "/auth/login", class: "button button-primary", id: "microsoft-signin" }, t("signin.microsoft"));
}

async function main() {
  translatePage();
  showError(new URLSearchParams(window.location.search));
  const box = document.getElementById("signin-options");
  let options;
  try {
    const response = await fetch("/api/auth/options", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(String(response.status));
    options = await response.json();
  } catch (err) {
    box.replaceChildren(el("p", { class: "alert alert-error" }, t("signin.optionsFailed", { status: err.message })));
    return;
  }
  const parts = [];
  if (options.microsoft) parts.push(microsoftLink());
  if (options.demo) parts.push(demoForm());
  if (parts.length === 0) parts.push(el("p", { class: "alert", id: "signin-none" }, t("signin.none")));
  box.replaceChildren(...parts);
}

main();
