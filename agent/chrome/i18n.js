// The extension's words come from _locales/<lang>/messages.json through chrome.i18n (the
// browser's language; English otherwise). `msg(name, ...values)` fills $1, $2, ….

export function msg(name, ...values) {
  const text = chrome.i18n.getMessage(name, values.map(String));
  return text || name;
}

/** Fill every element carrying data-msg="name" with its text; set <html lang>. */
export function translatePage() {
  document.documentElement.lang = chrome.i18n.getUILanguage().startsWith("nl") ? "nl" : "en";
  for (const el of document.querySelectorAll("[data-msg]")) el.textContent = msg(el.dataset.msg);
}
