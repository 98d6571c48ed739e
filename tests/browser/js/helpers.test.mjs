// Pure helpers of the dashboard: ordering, tabs, status text, backoff, translations.
import assert from "node:assert/strict";
import { test } from "node:test";
import { activeTabTitle, describeState, formatLastSeen, groupTabsByWindow, sortStudents } from "../dashboard/format.js";
import { STRINGS, t } from "../dashboard/i18n.js";
import { backoffDelay, socketUrl } from "../dashboard/live.js";

test("students are ordered by display name, case- and accent-insensitively", () => {
  const students = [
    { id: 3, display_name: "zoë X." },
    { id: 1, display_name: "Émile B." },
    { id: 2, display_name: "anna K." },
    { id: 4, display_name: "Daan P." },
  ];
  assert.deepEqual(sortStudents(students, "nl").map((s) => s.id), [2, 4, 1, 3]);
  assert.equal(students[0].id, 3, "the input is not reordered");
});

test("the active tab title is the first tab marked active", () => {
  const tabs = [
    { title: "A", url: "", active: false, window: 1 },
    { title: "B", url: "", active: true, window: 1 },
    { title: "C", url: "", active: true, window: 2 },
  ];
  assert.equal(activeTabTitle(tabs), "B");
  assert.equal(activeTabTitle([{ title: "A", active: false }]), null);
  assert.equal(activeTabTitle(undefined), null);
});

test("tabs are grouped by window in window order, keeping tab order", () => {
  const groups = groupTabsByWindow([
    { title: "x", window: 2 },
    { title: "a", window: 1 },
    { title: "y", window: 2 },
  ]);
  assert.deepEqual(groups.map((g) => [g.window, g.tabs.map((tab) => tab.title)]), [[1, ["a"]], [2, ["x", "y"]]]);
});

test("status: elsewhere wins, then online, then offline with last seen", () => {
  const now = new Date(2026, 10, 23, 9, 0);
  const seen = new Date(2026, 10, 23, 8, 31).toISOString();
  assert.equal(describeState({ online: true, elsewhere: true }, now).kind, "elsewhere");
  assert.equal(describeState({ online: true }, now).kind, "online");
  assert.equal(describeState({ online: true, outside_lesson_hours: true }, now).key, "tile.outsideHours");
  const offline = describeState({ online: false, last_seen: seen }, now, "en-GB");
  assert.equal(offline.kind, "offline");
  assert.equal(t(offline.key, offline.vars), "offline — last seen 08:31");
  assert.equal(t(describeState({ online: false, last_seen: null }, now).key), "offline");
  // do-not-view and private page say why nothing is shown, with no title or address
  assert.equal(describeState({ online: true, no_view: true }, now).key, "tile.noView");
  assert.equal(describeState({ online: true, private_page: true }, now).key, "tile.privatePage");
  assert.match(t("tile.privatePage"), /private page/);
  const yesterday = new Date(2026, 10, 22, 14, 5).toISOString();
  assert.equal(formatLastSeen(yesterday, now, "en-GB"), "22 Nov 14:05");
  assert.equal(formatLastSeen("not a date", now), null);
});

test("reconnect delays double from 1 s up to 30 s, within the jitter", () => {
  const low = () => 0;
  const high = () => 1;
  assert.equal(backoffDelay(0, low), 500);
  assert.equal(backoffDelay(0, high), 1500);
  assert.equal(backoffDelay(3, () => 0.5), 8000);
  assert.equal(backoffDelay(50, () => 0.5), 30000);
});

test("the socket URL follows the page's scheme and host", () => {
  assert.equal(socketUrl("/ws/dashboard", { protocol: "https:", host: "k.example" }), "wss://k.example/ws/dashboard");
  assert.equal(socketUrl("/ws/dashboard", { protocol: "http:", host: "127.0.0.1:8080" }), "ws://127.0.0.1:8080/ws/dashboard");
});

test("English and Dutch have the same keys and the same placeholders", () => {
  const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
  assert.deepEqual(Object.keys(STRINGS.nl).sort(), Object.keys(STRINGS.en).sort());
  for (const key of Object.keys(STRINGS.en)) {
    assert.ok(STRINGS.nl[key].length > 0, key);
    assert.deepEqual(placeholders(STRINGS.nl[key]), placeholders(STRINGS.en[key]), key);
  }
  assert.throws(() => t("no.such.key"), /no text for no.such.key/);
});
