// Unit tests of the private-page list: `node --test agent/chrome/test/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import { blankPrivateTabs, isPrivateUrl } from "../private.js";

const LIST = ["mail.google.com", "ing.nl", "proton.me/mail", "127.0.0.1/bank"];

test("a host matches itself and its sub-domains, not look-alikes", () => {
  assert.equal(isPrivateUrl("https://mail.google.com/mail/u/0/#inbox", LIST), true);
  assert.equal(isPrivateUrl("https://mijn.ing.nl/login", LIST), true);
  assert.equal(isPrivateUrl("https://ING.NL./", LIST), true);
  assert.equal(isPrivateUrl("https://notging.nl/", LIST), false);
  assert.equal(isPrivateUrl("https://ing.nl.evil.example/", LIST), false);
  assert.equal(isPrivateUrl("https://docs.google.com/", LIST), false);
});

test("a path prefix matches whole path segments", () => {
  assert.equal(isPrivateUrl("https://proton.me/mail/inbox", LIST), true);
  assert.equal(isPrivateUrl("https://proton.me/mail", LIST), true);
  assert.equal(isPrivateUrl("https://proton.me/mailbox-offer", LIST), false);
  assert.equal(isPrivateUrl("https://proton.me/", LIST), false);
  assert.equal(isPrivateUrl("http://127.0.0.1:8123/bank/home", LIST), true);
});

test("no list, other schemes and garbage are never private", () => {
  assert.equal(isPrivateUrl("https://ing.nl/", []), false);
  assert.equal(isPrivateUrl("https://ing.nl/", undefined), false);
  assert.equal(isPrivateUrl("chrome://settings", LIST), false);
  assert.equal(isPrivateUrl("not a url", LIST), false);
});

test("private tabs lose title and address", () => {
  const tabs = blankPrivateTabs(
    [
      { title: "Inbox (3) - anna@gmail.com", url: "https://mail.google.com/mail/", active: true, windowId: 1 },
      { title: "Wiskunde", url: "https://example.org/", active: false, windowId: 1 },
    ],
    LIST,
  );
  assert.deepEqual(tabs[0], { title: "", url: "", pendingUrl: "", active: true, windowId: 1, private: true });
  assert.equal(tabs[1].title, "Wiskunde");
});
