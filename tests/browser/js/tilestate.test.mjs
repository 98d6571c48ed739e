// The tile-state table: what a tile says in each state, and what becomes of its picture.
import assert from "node:assert/strict";
import { test } from "node:test";
import { STRINGS } from "../dashboard/i18n.js";
import {
  TILE_FLAGS,
  TILE_STATES,
  captureReasonKey,
  describeTile,
  domainOf,
  isDesktopWindow,
  isStale,
} from "../dashboard/tilestate.js";

const live = { connected: true, picture: { capturedAt: 0, stale: false } };

test("a capture error is never online and labels the old picture", () => {
  const d = describeTile({ online: true, capture_error: "screen locked" }, live);
  assert.equal(d.state.code, "capture_error");
  assert.notEqual(d.state.kind, "live");
  assert.equal(d.picture, "label");
  assert.equal(d.problem, true);
});

test("not live wins over everything and is never drawn as live", () => {
  for (const state of [{ online: true }, { online: true, capture_error: "x" }, { online: false }]) {
    const d = describeTile(state, { connected: false, picture: null });
    assert.equal(d.state.code, "not_live");
    assert.notEqual(d.state.kind, "live");
  }
});

test("class-wide and elsewhere states hide the picture and the tab title", () => {
  assert.equal(describeTile({ online: true, outside_lesson_hours: true }, live).picture, "hide");
  assert.equal(describeTile({ online: true, elsewhere: true }, live).picture, "hide");
});

test("an old picture is stale, a fresh one online, none yet is waiting", () => {
  assert.equal(describeTile({ online: true }, { connected: true, picture: { stale: true } }).state.code, "stale");
  assert.equal(describeTile({ online: true }, live).state.code, "online");
  assert.equal(describeTile({ online: true }, { connected: true, picture: null }).state.code, "waiting");
  assert.equal(isStale(1000, 1000 + 9000, 2000), false);
  assert.equal(isStale(1000, 1000 + 10001, 2000), true);
  assert.equal(isStale(1000, 1000 + 12000, 3000), false, "5 intervals of 3 s");
  assert.equal(isStale(Number.NaN, 0, 2000), true);
});

test("flags come from state.flags codes or state.<code>, and may hide the picture", () => {
  const d = describeTile({ online: true, flags: ["do_not_view"], unverified: true }, live);
  assert.deepEqual(d.flags.map((f) => f.code).sort(), ["do_not_view", "unverified"]);
  assert.equal(d.picture, "hide");
  assert.equal(d.problem, false); // unverified is flagged, not a problem
  assert.deepEqual(describeTile({ online: true, flags: ["no_such_flag"] }, live).flags, []);
});

test("the server's own status fields become flags: identity, contested, no_view", () => {
  const unverified = describeTile({ online: true, identity: "unverified" }, live);
  assert.deepEqual(unverified.flags.map((f) => f.code), ["unverified"]);
  assert.equal(unverified.problem, false);
  assert.deepEqual(describeTile({ online: true, identity: "verified" }, live).flags, []);
  const contested = describeTile({ online: true, identity: "verified", contested: 2 }, live);
  assert.deepEqual(contested.flags.map((f) => f.code), ["contested"]);
  assert.equal(contested.problem, true);
  const blocked = describeTile({ online: true, no_view: true }, live);
  assert.deepEqual(blocked.flags.map((f) => f.code), ["do_not_view"]);
  assert.equal(blocked.picture, "hide");
});

test("every state and flag has its words in English and Dutch", () => {
  for (const lang of ["en", "nl"]) {
    for (const entry of TILE_STATES) assert.ok(STRINGS[lang][`state.${entry.code}`], `${lang} state.${entry.code}`);
    for (const flag of TILE_FLAGS) assert.ok(STRINGS[lang][`flag.${flag.code}`], `${lang} flag.${flag.code}`);
  }
});

test("domains, desktop windows and capture reasons", () => {
  assert.equal(domainOf("https://www.rekenen.example/x?y=1"), "rekenen.example");
  assert.equal(domainOf(""), "");
  assert.equal(domainOf("not a url"), "");
  assert.equal(isDesktopWindow([{ title: "Word", url: "" }]), true);
  assert.equal(isDesktopWindow([{ title: "Tab", url: "https://a.example/" }]), false);
  assert.equal(captureReasonKey("screen locked (demo)"), "capture.locked");
  assert.equal(captureReasonKey("no display to capture (DISPLAY not set)"), "capture.noDisplay");
  assert.equal(captureReasonKey("something odd"), "capture.other");
  // the agent's code wins over the words of its reason; an unknown code falls back to them
  assert.equal(captureReasonKey("the watched indicator was closed (exit 1)", "indicator"), "capture.indicator");
  assert.equal(captureReasonKey("page cannot be captured", "page"), "capture.page");
  assert.equal(captureReasonKey("Wayland session without a portal", "portal"), "capture.portal");
  assert.equal(captureReasonKey("screen locked", "other"), "capture.locked");
  assert.equal(captureReasonKey("screen locked", "__proto__"), "capture.locked");
});
