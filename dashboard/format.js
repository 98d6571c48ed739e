// Pure helpers for what tiles and the focus view show. No DOM.

/** Students ordered by display name (locale-aware, case-insensitive), then id. */
export function sortStudents(students, locale = undefined) {
  const collator = new Intl.Collator(locale, { sensitivity: "base", numeric: true });
  return [...students].sort(
    (a, b) => collator.compare(a.display_name, b.display_name) || a.id - b.id,
  );
}

/** The title of the active tab (first one marked active), or null. */
export function activeTabTitle(tabs) {
  if (!Array.isArray(tabs) || tabs.length === 0) return null;
  const active = tabs.find((tab) => tab.active) ?? null;
  return active ? active.title : null;
}

/** Tabs grouped by window number, windows in ascending order, tab order kept. */
export function groupTabsByWindow(tabs) {
  const windows = new Map();
  for (const tab of Array.isArray(tabs) ? tabs : []) {
    const key = Number.isInteger(tab.window) ? tab.window : 0;
    if (!windows.has(key)) windows.set(key, []);
    windows.get(key).push(tab);
  }
  return [...windows.entries()].sort((a, b) => a[0] - b[0]).map(([window, list]) => ({ window, tabs: list }));
}

/** Local clock time of an ISO timestamp: "08:31", or "21 Nov 08:31" when not today. */
export function formatLastSeen(iso, now = new Date(), locale = undefined) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return null;
  const time = when.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit", hour12: false });
  if (when.toDateString() === now.toDateString()) return time;
  const day = when.toLocaleDateString(locale, { day: "numeric", month: "short" });
  return `${day} ${time}`;
}

/**
 * What a tile says about a student's device: {kind, key, vars} where kind is one of
 * "online", "offline", "elsewhere" and key/vars select the i18n text. Outside lesson
 * hours nothing is sent, so the tile says that rather than "online".
 */
export function describeState(state, now = new Date(), locale = undefined) {
  const s = state || {};
  if (s.no_view) return { kind: "offline", key: "tile.noView", vars: {} };
  if (s.private_page) return { kind: "online", key: "tile.privatePage", vars: {} };
  if (s.elsewhere) return { kind: "elsewhere", key: "tile.elsewhere", vars: {} };
  if (s.outside_lesson_hours) return { kind: "offline", key: "tile.outsideHours", vars: {} };
  if (s.online) return { kind: "online", key: "tile.online", vars: {} };
  const time = s.last_seen ? formatLastSeen(s.last_seen, now, locale) : null;
  if (time) return { kind: "offline", key: "tile.lastSeen", vars: { time } };
  return { kind: "offline", key: "tile.offline", vars: {} };
}
