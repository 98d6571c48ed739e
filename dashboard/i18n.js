// Every string the dashboard shows, in English and Dutch. Pick with ?lang=nl (remembered
// in localStorage); English is the default for now.

export const STRINGS = Object.freeze({
  en: {
    "app.title": "Klasblik",
    "signin.title": "Sign in to Klasblik",
    "signin.pageTitle": "Klasblik — sign in",
    "signin.intro": "Teachers see, live, the screens of their own students during lessons.",
    "signin.loading": "Checking how you can sign in…",
    "signin.demo": "Demo sign-in (demo mode, this machine only)",
    "signin.demoNote": "Demo mode: made-up students and screens. Never use it with real pupils.",
    "signin.microsoft": "Sign in with Microsoft 365",
    "signin.none": "Sign-in is not configured yet. Ask your IT department to set up Microsoft 365 sign-in.",
    "signin.optionsFailed": "Could not reach the server ({status}). Reload the page to try again.",
    "signin.error": "Sign-in failed: {message}",
    "signin.errors.not_configured": "Microsoft 365 sign-in is not set up on this server.",
    "signin.errors.unavailable": "Microsoft 365 cannot be reached; try again later.",
    "signin.errors.provider_refused": "Microsoft 365 did not sign you in; start again.",
    "signin.errors.missing_state": "The answer from Microsoft was incomplete; start the sign-in again.",
    "signin.errors.invalid_state": "This sign-in was already used, has expired or was started elsewhere; start again.",
    "signin.errors.invalid_token": "The sign-in answer could not be verified; start again.",
    "signin.errors.expired_token": "The sign-in took too long; sign in again.",
    "signin.errors.wrong_tenant": "This account belongs to another organisation than the school's.",
    "signin.errors.student_account": "Students cannot open the dashboard.",
    "signin.errors.unknown_account": "Your account is not in the school's staff roster; ask your IT department.",
    "signin.errors.account_disabled": "Your account is disabled in the school's roster.",
    "signin.errors.account_mismatch": "This username belongs to another account in the roster; ask your IT department.",
    "signin.errors.other": "Something went wrong; start the sign-in again.",
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
    "tile.noView": "not viewed: on the school's do-not-view list",
    "tile.privatePage": "private page: nothing is shown",
    "tile.outsideHours": "outside lesson hours: nothing is shown",
    "tile.elsewhereNote": "Not at this location: no screen shown",
    "tile.unverified": "unverified device",
    "tile.contested": "also claimed by {count} unverified device(s)",
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
  },
  nl: {
    "app.title": "Klasblik",
    "signin.title": "Inloggen bij Klasblik",
    "signin.pageTitle": "Klasblik — inloggen",
    "signin.intro": "Docenten zien tijdens de les live de schermen van hun eigen leerlingen.",
    "signin.loading": "Bezig met nagaan hoe je kunt inloggen…",
    "signin.demo": "Demo-inlog (demomodus, alleen deze computer)",
    "signin.demoNote": "Demomodus: verzonnen leerlingen en schermen. Nooit gebruiken met echte leerlingen.",
    "signin.microsoft": "Inloggen met Microsoft 365",
    "signin.none": "Inloggen is nog niet ingesteld. Vraag de ICT-afdeling om inloggen met Microsoft 365 in te stellen.",
    "signin.optionsFailed": "De server is niet bereikbaar ({status}). Laad de pagina opnieuw om het nog eens te proberen.",
    "signin.error": "Inloggen mislukt: {message}",
    "signin.errors.not_configured": "Inloggen met Microsoft 365 is op deze server niet ingesteld.",
    "signin.errors.unavailable": "Microsoft 365 is niet bereikbaar; probeer het later opnieuw.",
    "signin.errors.provider_refused": "Microsoft 365 heeft je niet ingelogd; begin opnieuw.",
    "signin.errors.missing_state": "Het antwoord van Microsoft was onvolledig; begin opnieuw met inloggen.",
    "signin.errors.invalid_state": "Deze inlogpoging is al gebruikt, verlopen of elders begonnen; begin opnieuw.",
    "signin.errors.invalid_token": "Het antwoord op de inlogpoging kon niet worden gecontroleerd; begin opnieuw.",
    "signin.errors.expired_token": "Het inloggen duurde te lang; log opnieuw in.",
    "signin.errors.wrong_tenant": "Dit account hoort bij een andere organisatie dan de school.",
    "signin.errors.student_account": "Leerlingen kunnen het dashboard niet openen.",
    "signin.errors.unknown_account": "Je account staat niet in het personeelsbestand van de school; vraag de ICT-afdeling.",
    "signin.errors.account_disabled": "Je account is uitgeschakeld in het bestand van de school.",
    "signin.errors.account_mismatch": "Deze gebruikersnaam hoort bij een ander account in het bestand; vraag de ICT-afdeling.",
    "signin.errors.other": "Er ging iets mis; begin opnieuw met inloggen.",
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
    "tile.noView": "niet bekeken: staat op de lijst 'niet bekijken' van de school",
    "tile.privatePage": "privépagina: er wordt niets getoond",
    "tile.outsideHours": "buiten lestijd: er wordt niets getoond",
    "tile.elsewhereNote": "Niet op deze locatie: geen scherm getoond",
    "tile.unverified": "niet-geverifieerd apparaat",
    "tile.contested": "ook geclaimd door {count} niet-geverifieerd(e) apparaat/apparaten",
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
  return wanted && LANGUAGES.includes(wanted) ? wanted : "en";
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
}
