// What one tile says, decided in one place. Pure: a student's server state, what is known
// about its picture and whether the dashboard is live go in; a plain description comes out.
//
// A new state or flag the server sends is one entry in TILE_FLAGS (or TILE_STATES) plus
// its strings in i18n.js ("flag.<code>" and, for the screen, "flag.<code>.screen"). The
// server sends flags as codes: `state.flags: ["code", ...]`, or a `state.<code>: true`
// field; either is picked up by the entry's code, or by its `when` for a field of
// another shape. A flag's words get the status as parameters ("{contested}").

/** Grid intervals after which a picture counts as old ("last picture 10:42"). */
export const STALE_INTERVALS = 5;
/** A picture is never called old before this many ms, whatever the grid interval. */
export const STALE_MIN_MS = 10000;

function hasFlag(state, flag) {
  const { code } = flag;
  if (flag.when && flag.when(state)) return true;
  return state[code] === true || (Array.isArray(state.flags) && state.flags.includes(code));
}

/**
 * Flags: shown as a badge beside the status, independent of each other.
 * - code: what the server sends
 * - picture: "hide" (no picture and no tab title) or "show"
 * - problem: counts for the "problems" filter and the status sort
 */
export const TILE_FLAGS = Object.freeze([
  // the device did not prove who is signed in (policy "token"; docs/protocol.md, hello):
  // flagged, not a problem (during a transition every tile of the school has it)
  Object.freeze({ code: "unverified", picture: "show", problem: false, when: (s) => s.online === true && s.identity === "unverified" }),
  // another, less-proven connection claims this student: it replaced nothing
  Object.freeze({ code: "contested", picture: "show", problem: true, when: (s) => Number(s.contested) > 0 }),
  // on the do-not-view list (the server's status field is `no_view`)
  Object.freeze({ code: "do_not_view", picture: "hide", problem: false, when: (s) => s.no_view === true }),
  Object.freeze({ code: "private_page", picture: "hide", problem: false }),
]);

/**
 * States: the first whose `when` holds is the tile's status. Order matters: what hides
 * the picture comes first, "online" last, so a tile never says "online" beside an error
 * or while the dashboard is not live.
 * - kind: CSS class status-<kind>; "live" is the only one drawn green
 * - picture: "hide" (blank, no tab title), "label" (kept, greyed, labelled), "show"
 * - rank: order in the status sort (problems first)
 * - classWide: a class-wide reason: the banner explains it, the tile only says "not shown"
 */
export const TILE_STATES = Object.freeze([
  Object.freeze({
    code: "not_live",
    when: (s, ctx) => !ctx.connected,
    kind: "unknown",
    picture: "label",
    rank: 5,
  }),
  Object.freeze({
    code: "outside_lesson_hours",
    when: (s) => s.outside_lesson_hours === true,
    kind: "blocked",
    picture: "hide",
    rank: 6,
    classWide: true,
  }),
  Object.freeze({
    code: "elsewhere",
    when: (s) => s.elsewhere === true,
    kind: "blocked",
    picture: "hide",
    rank: 6,
  }),
  Object.freeze({
    code: "offline",
    when: (s) => !s.online,
    kind: "offline",
    picture: "label",
    rank: 7,
  }),
  Object.freeze({
    code: "capture_error",
    when: (s) => Boolean(s.capture_error),
    kind: "problem",
    picture: "label",
    rank: 0,
    problem: true,
  }),
  Object.freeze({
    code: "stale",
    when: (s, ctx) => ctx.picture !== null && ctx.picture.stale,
    kind: "stale",
    picture: "label",
    rank: 2,
  }),
  Object.freeze({
    code: "waiting",
    when: (s, ctx) => ctx.picture === null,
    kind: "live",
    picture: "show",
    rank: 3,
  }),
  Object.freeze({ code: "online", when: () => true, kind: "live", picture: "show", rank: 1 }),
]);

/** Whether a picture taken at `capturedAt` (ms) is old at `now`, given the grid rate. */
export function isStale(capturedAt, now, intervalMs) {
  if (!Number.isFinite(capturedAt)) return true;
  const limit = Math.max(STALE_MIN_MS, STALE_INTERVALS * (intervalMs || 2000));
  return now - capturedAt > limit;
}

/**
 * Everything a tile shows about its student.
 * @param {object} state the server's state for this student (status event / subscribe)
 * @param {{connected: boolean, picture: null|{capturedAt: number, stale: boolean}}} ctx
 * @returns {{state: object, flags: object[], picture: string, problem: boolean, rank: number}}
 */
export function describeTile(state, ctx) {
  const s = state || {};
  const found = TILE_STATES.find((entry) => entry.when(s, ctx)) ?? TILE_STATES[TILE_STATES.length - 1];
  const flags = TILE_FLAGS.filter((flag) => hasFlag(s, flag));
  let picture = found.picture;
  if (flags.some((flag) => flag.picture === "hide")) picture = "hide";
  const problem = Boolean(found.problem) || flags.some((flag) => flag.problem);
  return { state: found, flags, picture, problem, rank: problem ? Math.min(found.rank, 0) : found.rank };
}

/** The host of a URL without "www.", or "" for no URL (a desktop window) or a bad one. */
export function domainOf(url) {
  if (!url) return "";
  try {
    const host = new URL(url).hostname;
    return host.startsWith("www.") ? host.slice(4) : host;
  } catch {
    return "";
  }
}

/** A desktop agent reports its active window as one tab without a URL. */
export function isDesktopWindow(tabs) {
  return Array.isArray(tabs) && tabs.length > 0 && tabs.every((tab) => !tab.url);
}

/** The words for each cause an agent names in `capture_error.code` (docs/protocol.md). */
const CAPTURE_CODE_KEYS = {
  indicator: "capture.indicator",
  locked: "capture.locked",
  no_display: "capture.noDisplay",
  permission: "capture.permission",
  portal: "capture.portal",
  page: "capture.page",
};

/** Words for why a screen cannot be captured: the agent's code (`state.capture_code`)
 * when it names a known cause; otherwise (an older agent, `other`) a few causes are
 * recognised in the free-text reason (usually English), anything else a general sentence. */
export function captureReasonKey(reason, code = null) {
  if (code && Object.hasOwn(CAPTURE_CODE_KEYS, code)) return CAPTURE_CODE_KEYS[code];
  const r = String(reason || "").toLowerCase();
  if (/lock/.test(r)) return "capture.locked";
  if (/display|no screen|monitor/.test(r)) return "capture.noDisplay";
  if (/permission|denied|not allowed|consent/.test(r)) return "capture.permission";
  return "capture.other";
}
