// Every string the dashboard shows, in English and Dutch. Pick with ?lang=nl or ?lang=en
// (remembered in localStorage); otherwise the browser's preferred language decides. The
// server sends codes with parameters (error codes, notice kinds, state fields); the words
// for them live here ("code.*", "banner.*", "state.*", "flag.*").

export const STRINGS = Object.freeze({
  en: {
    "app.title": "Klasblik",
    "signin.title": "Sign in to Klasblik",
    "signin.pageTitle": "Klasblik — sign in",
    "signin.intro": "Teachers see, live, the screens of their own students during lessons.",
    "signin.loading": "Checking how you can sign in…",
    "signin.demo": "Demo sign-in (demo mode, this machine only)",
    "signin.demoAdmin": "Demo sign-in as IT admin",
    "signin.demoNote": "Demo mode: made-up students and screens. Never use it with real pupils.",
    "signin.microsoft": "Sign in with Microsoft 365",
    "signin.none": "Sign-in is not configured yet. Ask your IT department to set up Microsoft 365 sign-in.",
    "signin.optionsFailed": "Could not reach the server ({status}). Reload the page to try again.",
    "signin.error": "Sign-in failed: {message}",
    "header.signout": "Sign out",
    "header.adminLocations": "Locations",
    "header.adminAudit": "Audit log",
    "header.signoutFailed": "Could not sign out ({status}). Try again.",
    "header.class": "Class",
    "header.demo": "DEMO",
    "header.demoTitle": "Demo mode: made-up students and screens",
    "header.user": "Signed in as {name}",
    "grid.loading": "Loading…",
    "grid.label": "Students",
    "grid.noClasses": "You have no classes yet. Classes come from the school's Microsoft 365 roster.",
    "grid.empty": "This class has no students.",
    "grid.connecting": "Connecting…",
    "grid.reconnecting": "Connection lost. Reconnecting in {seconds} s…",
    "grid.live": "Live",
    "grid.stopped": "Live view stopped: {message}",
    "grid.refused": "Cannot show this class: {message}",
    "grid.meFailed": "Could not load your classes ({status}). Reload the page to try again.",
    "tile.online": "online",
    "tile.offline": "offline",
    "tile.lastSeen": "offline — last seen {time}",
    "tile.elsewhere": "elsewhere",
    "tile.outsideHours": "outside lesson hours: nothing is shown",
    "tile.elsewhereNote": "Not at this location: no screen shown",
    "tile.noImage": "No screen yet",
    "tile.captureError": "Cannot capture: {reason}",
    "tile.noTab": "No tab information",
    "tile.alt": "Screen of {name}",
    "tile.label": "{name}, {status}. Open a larger view.",
    "focus.title": "{name}",
    "focus.close": "Close",
    "focus.closeHint": "Close (Escape)",
    "focus.tabs": "Open tabs",
    "focus.noTabs": "No open tabs reported.",
    "focus.window": "Window {n}",
    "focus.active": "active",
    "focus.alt": "Large view of the screen of {name}",
    "focus.failed": "Cannot open a larger view: {message}",
    "notice.close": "Dismiss",
    "app.heading": "Klasblik: live view of your class",
    "header.language": "Nederlands",
    "header.languageLabel": "Deze pagina in het Nederlands",
    "header.signedOutElsewhere": "Your sign-in has ended. Sign in again.",
    "grid.notLive": "Not live — reconnecting…",
    "grid.paused": "Paused while this tab is hidden",
    "grid.blocked": "Not live: nothing is shown",
    "grid.overlayNotLive": "Not live — reconnecting…",
    "grid.overlayPaused": "Paused: this tab is not visible, so no screens are watched.",
    "tools.label": "Grid tools",
    "tools.search": "Search by name",
    "tools.searchPlaceholder": "Name…",
    "tools.sort": "Sort",
    "tools.sortName": "Name (online first)",
    "tools.sortStatus": "Status (problems first)",
    "tools.sortRecent": "Recent change",
    "tools.filter": "Show",
    "tools.filterAll": "Everyone",
    "tools.filterOffline": "Offline",
    "tools.filterProblems": "Problems",
    "tools.size": "Tile size",
    "tools.sizeSmall": "Small",
    "tools.sizeMedium": "Medium",
    "tools.sizeLarge": "Large",
    "tools.count": "{shown} of {total} students",
    "tools.noMatch": "No student matches the search or filter.",
    "state.not_live": "not live",
    "state.outside_lesson_hours": "not shown",
    "state.elsewhere": "not at this location",
    "state.offline": "offline",
    "state.offlineSeen": "offline — last seen {time}",
    "state.capture_error": "cannot capture the screen",
    "state.stale": "online · no new picture",
    "state.waiting": "online · waiting for a picture",
    "state.online": "online",
    "screen.lastPicture": "last picture {time}",
    "screen.storedPicture": "stored picture {time}",
    "screen.outside_lesson_hours": "Outside lesson hours: nothing is shown",
    "screen.elsewhere": "Not at this location: no screen shown",
    "screen.notLive": "Not live",
    "screen.hidden": "Nothing is shown",
    "capture.locked": "the screen is locked",
    "capture.noDisplay": "no screen to capture",
    "capture.permission": "no permission to capture the screen",
    "capture.other": "the device reported a capture problem",
    "flag.unverified": "unverified device",
    "flag.do_not_view": "do not view",
    "flag.private_page": "private page",
    "tile.activeWindow": "Active window: {title}",
    "tile.openHint": "(open a larger view)",
    "focus.previous": "Previous student",
    "focus.next": "Next student",
    "focus.activeWindow": "Active window",
    "focus.position": "{n} of {total}",
    "banner.remote_mode": "Remote-lesson mode is on for {location} until {until}: teachers of this location may view their students wherever they are.",
    "banner.elsewhere": "You are not at a school location, so no screens are shown. Screens appear again once you are at school (or remote-lesson mode is switched on).",
    "banner.outside_lesson_hours": "It is outside lesson hours, so no screens are shown. Screens appear again when the next lesson starts.",
    "banner.demo": "Demo mode: simulated students, no real screens.",
    "banner.info": "Message from the server.",
    "code.forbidden": "you may not view this",
    "code.not_found": "it does not exist (any more)",
    "code.elsewhere": "you are not at a school location",
    "code.outside_lesson_hours": "it is outside lesson hours",
    "code.internal_error": "the server had a problem; try again",
    "code.too_slow": "this dashboard could not keep up",
    "code.session_ended": "your sign-in has ended",
    "code.disconnected": "the connection was lost",
    "code.going_away": "the server is restarting",
    "code.unknown": "an unexpected problem ({code})",
    "signin.detail": "Details: {message}",
    "signin.code.account_disabled": "your account is disabled in Klasblik",
    "signin.code.account_mismatch": "the account you signed in with is not the one that was asked for",
    "signin.code.expired_token": "the sign-in took too long; try again",
    "signin.code.invalid_state": "the sign-in could not be checked; try again",
    "signin.code.missing_state": "the sign-in could not be checked; try again",
    "signin.code.invalid_token": "Microsoft's answer could not be checked",
    "signin.code.provider_refused": "Microsoft refused the sign-in",
    "signin.code.sign_in_refused": "the sign-in was refused",
    "signin.code.student_account": "student accounts cannot sign in to the dashboard",
    "signin.code.unavailable": "the server cannot reach what it needs now; try again later",
    "signin.code.unknown_account": "this account is not in the school's staff list",
    "signin.code.wrong_tenant": "this account belongs to another organisation",
    "signin.code.access_denied": "access was refused",
    "signin.code.session_ended": "your sign-in has ended; sign in again",
  },
  nl: {
    "app.title": "Klasblik",
    "signin.title": "Inloggen bij Klasblik",
    "signin.pageTitle": "Klasblik — inloggen",
    "signin.intro": "Docenten zien tijdens de les live de schermen van hun eigen leerlingen.",
    "signin.loading": "Bezig met nagaan hoe je kunt inloggen…",
    "signin.demo": "Demo-inlog (demomodus, alleen deze computer)",
    "signin.demoAdmin": "Demo-inlog als ICT-beheerder",
    "signin.demoNote": "Demomodus: verzonnen leerlingen en schermen. Nooit gebruiken met echte leerlingen.",
    "signin.microsoft": "Inloggen met Microsoft 365",
    "signin.none": "Inloggen is nog niet ingesteld. Vraag de ICT-afdeling om inloggen met Microsoft 365 in te stellen.",
    "signin.optionsFailed": "De server is niet bereikbaar ({status}). Laad de pagina opnieuw om het nog eens te proberen.",
    "signin.error": "Inloggen mislukt: {message}",
    "header.signout": "Uitloggen",
    "header.adminLocations": "Locaties",
    "header.adminAudit": "Auditlog",
    "header.signoutFailed": "Uitloggen lukte niet ({status}). Probeer het opnieuw.",
    "header.class": "Klas",
    "header.demo": "DEMO",
    "header.demoTitle": "Demomodus: verzonnen leerlingen en schermen",
    "header.user": "Ingelogd als {name}",
    "grid.loading": "Laden…",
    "grid.label": "Leerlingen",
    "grid.noClasses": "Je hebt nog geen klassen. Klassen komen uit de Microsoft 365-gegevens van de school.",
    "grid.empty": "Deze klas heeft geen leerlingen.",
    "grid.connecting": "Verbinden…",
    "grid.reconnecting": "Verbinding verbroken. Opnieuw verbinden over {seconds} s…",
    "grid.live": "Live",
    "grid.stopped": "Live beeld gestopt: {message}",
    "grid.refused": "Deze klas kan niet worden getoond: {message}",
    "grid.meFailed": "Je klassen konden niet worden geladen ({status}). Laad de pagina opnieuw om het nog eens te proberen.",
    "tile.online": "online",
    "tile.offline": "offline",
    "tile.lastSeen": "offline — laatst gezien {time}",
    "tile.elsewhere": "elders",
    "tile.outsideHours": "buiten lestijd: er wordt niets getoond",
    "tile.elsewhereNote": "Niet op deze locatie: geen scherm getoond",
    "tile.noImage": "Nog geen scherm",
    "tile.captureError": "Kan scherm niet vastleggen: {reason}",
    "tile.noTab": "Geen tabbladinformatie",
    "tile.alt": "Scherm van {name}",
    "tile.label": "{name}, {status}. Open een grotere weergave.",
    "focus.title": "{name}",
    "focus.close": "Sluiten",
    "focus.closeHint": "Sluiten (Escape)",
    "focus.tabs": "Open tabbladen",
    "focus.noTabs": "Geen open tabbladen gemeld.",
    "focus.window": "Venster {n}",
    "focus.active": "actief",
    "focus.alt": "Grote weergave van het scherm van {name}",
    "focus.failed": "Grotere weergave lukt niet: {message}",
    "notice.close": "Sluiten",
    "app.heading": "Klasblik: live beeld van je klas",
    "header.language": "English",
    "header.languageLabel": "This page in English",
    "header.signedOutElsewhere": "Je inlog is beëindigd. Log opnieuw in.",
    "grid.notLive": "Niet live — opnieuw verbinden…",
    "grid.paused": "Gepauzeerd zolang dit tabblad verborgen is",
    "grid.blocked": "Niet live: er wordt niets getoond",
    "grid.overlayNotLive": "Niet live — opnieuw verbinden…",
    "grid.overlayPaused": "Gepauzeerd: dit tabblad is niet zichtbaar, dus er wordt niet meegekeken.",
    "tools.label": "Rasteropties",
    "tools.search": "Zoek op naam",
    "tools.searchPlaceholder": "Naam…",
    "tools.sort": "Sorteren",
    "tools.sortName": "Naam (online eerst)",
    "tools.sortStatus": "Status (problemen eerst)",
    "tools.sortRecent": "Laatst veranderd",
    "tools.filter": "Toon",
    "tools.filterAll": "Iedereen",
    "tools.filterOffline": "Offline",
    "tools.filterProblems": "Problemen",
    "tools.size": "Tegelgrootte",
    "tools.sizeSmall": "Klein",
    "tools.sizeMedium": "Middel",
    "tools.sizeLarge": "Groot",
    "tools.count": "{shown} van {total} leerlingen",
    "tools.noMatch": "Geen leerling past bij de zoekopdracht of het filter.",
    "state.not_live": "niet live",
    "state.outside_lesson_hours": "niet getoond",
    "state.elsewhere": "niet op deze locatie",
    "state.offline": "offline",
    "state.offlineSeen": "offline — laatst gezien {time}",
    "state.capture_error": "scherm kan niet worden vastgelegd",
    "state.stale": "online · geen nieuw beeld",
    "state.waiting": "online · wacht op beeld",
    "state.online": "online",
    "screen.lastPicture": "laatste beeld {time}",
    "screen.storedPicture": "bewaard beeld {time}",
    "screen.outside_lesson_hours": "Buiten lestijd: er wordt niets getoond",
    "screen.elsewhere": "Niet op deze locatie: geen scherm getoond",
    "screen.notLive": "Niet live",
    "screen.hidden": "Er wordt niets getoond",
    "capture.locked": "het scherm is vergrendeld",
    "capture.noDisplay": "er is geen scherm om vast te leggen",
    "capture.permission": "geen toestemming om het scherm vast te leggen",
    "capture.other": "het apparaat meldt een probleem met vastleggen",
    "flag.unverified": "niet-geverifieerd apparaat",
    "flag.do_not_view": "niet bekijken",
    "flag.private_page": "privépagina",
    "tile.activeWindow": "Actief venster: {title}",
    "tile.openHint": "(open een grotere weergave)",
    "focus.previous": "Vorige leerling",
    "focus.next": "Volgende leerling",
    "focus.activeWindow": "Actief venster",
    "focus.position": "{n} van {total}",
    "banner.remote_mode": "Afstandsonderwijs staat aan voor {location} tot {until}: docenten van deze locatie mogen hun leerlingen bekijken waar ze ook zijn.",
    "banner.elsewhere": "Je bent niet op een schoollocatie, dus er worden geen schermen getoond. De schermen komen terug zodra je op school bent (of afstandsonderwijs wordt aangezet).",
    "banner.outside_lesson_hours": "Het is buiten lestijd, dus er worden geen schermen getoond. De schermen komen terug als de volgende les begint.",
    "banner.demo": "Demomodus: gesimuleerde leerlingen, geen echte schermen.",
    "banner.info": "Bericht van de server.",
    "code.forbidden": "je mag dit niet bekijken",
    "code.not_found": "dit bestaat niet (meer)",
    "code.elsewhere": "je bent niet op een schoollocatie",
    "code.outside_lesson_hours": "het is buiten lestijd",
    "code.internal_error": "de server had een probleem; probeer het opnieuw",
    "code.too_slow": "dit dashboard kon het niet bijhouden",
    "code.session_ended": "je inlog is beëindigd",
    "code.disconnected": "de verbinding is verbroken",
    "code.going_away": "de server wordt herstart",
    "code.unknown": "een onverwacht probleem ({code})",
    "signin.detail": "Details: {message}",
    "signin.code.account_disabled": "je account is uitgeschakeld in Klasblik",
    "signin.code.account_mismatch": "je bent ingelogd met een ander account dan gevraagd",
    "signin.code.expired_token": "het inloggen duurde te lang; probeer het opnieuw",
    "signin.code.invalid_state": "het inloggen kon niet worden gecontroleerd; probeer het opnieuw",
    "signin.code.missing_state": "het inloggen kon niet worden gecontroleerd; probeer het opnieuw",
    "signin.code.invalid_token": "het antwoord van Microsoft kon niet worden gecontroleerd",
    "signin.code.provider_refused": "Microsoft heeft het inloggen geweigerd",
    "signin.code.sign_in_refused": "het inloggen is geweigerd",
    "signin.code.student_account": "leerlingaccounts kunnen niet inloggen op het dashboard",
    "signin.code.unavailable": "de server kan nu niet bij wat hij nodig heeft; probeer het later opnieuw",
    "signin.code.unknown_account": "dit account staat niet in de personeelslijst van de school",
    "signin.code.wrong_tenant": "dit account hoort bij een andere organisatie",
    "signin.code.access_denied": "de toegang is geweigerd",
    "signin.code.session_ended": "je inlog is beëindigd; log opnieuw in",
  },
});

export const LANGUAGES = Object.freeze(Object.keys(STRINGS));

function pickLanguage() {
  let wanted = null;
  try {
    wanted = new URLSearchParams(window.location.search).get("lang");
    if (wanted && LANGUAGES.includes(wanted)) {
      window.localStorage.setItem("klasblik.lang", wanted);
    } else {
      wanted = window.localStorage.getItem("klasblik.lang");
    }
  } catch {
    wanted = null;
  }
  if (wanted && LANGUAGES.includes(wanted)) return wanted;
  const preferred = (window.navigator.languages || [window.navigator.language || ""])[0] || "";
  return preferred.toLowerCase().startsWith("nl") ? "nl" : "en";
}

export const lang = typeof window === "undefined" ? "en" : pickLanguage();

/** The string for `key` in the current language, with `{name}` placeholders filled. */
export function t(key, vars = {}) {
  const text = STRINGS[lang][key] ?? STRINGS.en[key];
  if (text === undefined) throw new Error(`no text for ${key}`);
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/**
 * Fill every element carrying data-i18n="key" with its text, and every
 * data-i18n-label="key" into its aria-label; set <html lang> and, with data-i18n-title
 * on <html>, the document title.
 */
export function translatePage(root = document) {
  const html = document.documentElement;
  html.lang = lang;
  if (html.dataset.i18nTitle) document.title = t(html.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.setAttribute("placeholder", t(el.dataset.i18nPlaceholder));
  }
}

/** The words for a server code (an error or refusal), in the reader's language. */
export function codeText(code) {
  const key = `code.${code}`;
  if (key in STRINGS.en) return t(key);
  return t("code.unknown", { code: String(code || "?") });
}

/** Whether there is text for `key` (for optional entries such as "flag.<code>"). */
export function hasText(key) {
  return key in STRINGS.en;
}

/** A local clock time "10:42" (or "21 Nov 10:42" when not today) in the reader's language. */
export function clockTime(ms, now = Date.now()) {
  const when = new Date(ms);
  if (Number.isNaN(when.getTime())) return "?";
  const locale = lang === "nl" ? "nl-NL" : "en-GB";
  const time = when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", hour12: false });
  if (when.toDateString() === new Date(now).toDateString()) return time;
  return `${when.toLocaleDateString(locale, { day: "numeric", month: "short" })} ${time}`;
}
