// A page the server refused (see server/klasblik/server/web/error_page.py): the error code
// comes in <html data-error-code>, the words from i18n.js; links home and to sign out.
import { getMe, signOut } from "./api.js";
import { hasText, t, translatePage } from "./i18n.js";

const $ = (id) => document.getElementById(id);

async function main() {
  translatePage();
  const code = document.documentElement.dataset.errorCode || "unknown";
  const key = hasText(`error.${code}.title`) ? code : "other";
  document.title = t(`error.${key}.title`);
  $("error-title").textContent = t(`error.${key}.title`);
  $("error-text").textContent = t(`error.${key}.text`, { code });
  $("error-home").textContent = t("error.home");
  try {
    const me = await getMe();
    const button = $("error-signout");
    button.textContent = t("header.signout");
    button.hidden = false;
    button.addEventListener("click", async () => {
      await signOut(me.csrf_token).catch(() => {});
      window.location.assign("/signin");
    });
  } catch {
    // not signed in: no sign-out button
  }
}

main();
