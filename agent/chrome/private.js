// Private use is spared from monitoring: pages on the school's list (webmail, health,
// banking, counselling; the server sends the list in `welcome.private_pages`) are never
// captured. The tab is blanked on the device before any capture: no screenshot is taken,
// the server is told "private page", and the tab list carries no title or address for it.

/** Lower-case host and path of `url`, or null for anything that is not http(s). */
function hostPath(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  return { host: parsed.hostname.toLowerCase().replace(/\.$/, ""), path: parsed.pathname.toLowerCase() };
}

/**
 * Whether `url` is on the private list. A pattern is a host ("ing.nl": that host and its
 * sub-domains) or a host with a path prefix ("proton.me/mail").
 */
export function isPrivateUrl(url, patterns) {
  if (!url || !Array.isArray(patterns) || patterns.length === 0) return false;
  const where = hostPath(url);
  if (where === null) return false;
  for (const raw of patterns) {
    if (typeof raw !== "string" || raw === "") continue;
    const pattern = raw.toLowerCase().replace(/^\.+/, "");
    const slash = pattern.indexOf("/");
    const host = slash < 0 ? pattern : pattern.slice(0, slash);
    const path = slash < 0 ? "" : pattern.slice(slash);
    const hostMatches = where.host === host || where.host.endsWith("." + host);
    if (hostMatches && (path === "" || where.path === path || where.path.startsWith(path.replace(/\/?$/, "/")))) {
      return true;
    }
  }
  return false;
}

/** The raw tabs with every private one blanked: no title, no address, marked private. */
export function blankPrivateTabs(rawTabs, patterns) {
  return rawTabs.map((t) =>
    t && isPrivateUrl(t.url || t.pendingUrl, patterns) ? { ...t, title: "", url: "", pendingUrl: "", private: true } : t,
  );
}
