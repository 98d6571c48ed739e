// The sign-in page: asks the server which sign-in methods it offers and shows them.
import { codeText, hasText, lang, t, translatePage } from "./i18n.js";

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// A refusal comes back as ?error=CODE&message=TEXT (the server's text is English): the
// code is worded here; the server's own text is added only to the English page.
function showError(params) {
  const code = params.get("error") || params.get("reason");
  if (!code) return;
  const known = hasText(`signin.code.${code}`);
  let text = t("signin.error", { message: known ? t(`signin.code.${code}`) : codeText(code) });
  const message = params.get("message");
  if (message && lang === "en") text += ` ${t("signin.detail", { message })}`;
  const box = document.getElementById("signin-error");
  box.textContent = text;
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
