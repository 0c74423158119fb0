// loramesh.js: loramesh in the browser, as an ES module.
//
//   import { load } from "./loramesh.js";
//   const lm = await load();                       // fetches loramesh.wasm beside this file
//   lm.features();                                 // custody: what holds in this browser
//   const node = await lm.open({ name: "me", create: true, displayName: "Ada",
//                                protect: "none" });  // or "prf": a FIDO2 security key wraps the keys
//   node.fingerprint; node.card;                   // give the card to contacts
//   node.connect("ws://127.0.0.1:7100/");          // the daemon's WebSocket bridge
//   node.addEventListener("hello", (e) => ...);    // the bridge's node offers its card: e.detail
//   await node.addContact("daemon", cardBytes);    // then compare fingerprints out of band:
//   await node.verifyContact("daemon", "XXXX-XXXX-XXXX-XXXX");
//   const id = await node.send("daemon", "hello"); // "delivery" events follow: queued, sent, delivered | failed
//   node.addEventListener("message", (e) => e.detail.text);  // the peer's text: escape it before showing it
//
// A node is a full peer: its identity, its contacts, its sessions. Its one
// link is the daemon's WebSocket bridge, which carries its packets like a
// radio or UDP link; the daemon is a contact like any other, not a remote
// control. Events: message, delivery, session, stranger, address, dropped
// (the engine's), and hello, link (the bridge's).
//
// Custody in a browser (README.md, "In a browser"): wasm memory is readable
// by every script on the page, there is no mlock and no runtime/secret;
// identity keys are non-extractable WebCrypto keys, plain PKCS#8 on disk
// unless protect: "prf" keeps them wrapped under a security key.

import "./wasm_exec.js";

let loaded = null;

// load instantiates loramesh.wasm (once per page) and returns the API.
export function load({ wasm = new URL("./loramesh.wasm", import.meta.url) } = {}) {
  if (!loaded) loaded = instantiate(wasm);
  return loaded;
}

async function instantiate(url) {
  const go = new globalThis.Go();
  const res = await fetch(url);
  if (!res.ok) throw new Error(`loramesh: fetching ${url}: ${res.status}`);
  const { instance } = await WebAssembly.instantiateStreaming(res, go.importObject);
  const ready = new Promise((resolve) => { globalThis.__lorameshReady = resolve; });
  const exited = go.run(instance).then(() => { throw new Error("loramesh: the wasm program exited"); });
  const api = await Promise.race([ready, exited]); // go.run returns only if the program ends
  delete globalThis.__lorameshReady;
  return new Loramesh(api, instance);
}

class Loramesh {
  constructor(api, instance) {
    this.api = api;
    this.instance = instance;
  }

  // What this build does with secrets here: custody "unprotected" (no
  // locked memory, no erasure, memory readable by the page), and which
  // key protections exist.
  features() {
    return this.api.features();
  }

  identities() {
    return this.api.listIdentities();
  }

  protection(name) {
    return this.api.identityProtection(name);
  }

  deleteIdentity(name) {
    return this.api.deleteIdentity(name);
  }

  // open({name, create, displayName, protect: "none"|"prf", suites}):
  // opens the identity (create: make it if it does not exist) and its
  // node. Another tab holding it open makes this fail.
  async open(opts = {}) {
    const h = await this.api.open(opts);
    const node = new Node(this.api, h);
    await node.refresh();
    return node;
  }
}

const RECONNECT_MIN = 500, RECONNECT_MAX = 15000;

export class Node extends EventTarget {
  constructor(api, h) {
    super();
    this.api = api;
    this.h = h;
    this.ws = null;
    this.url = null;
    this.timer = null;
    this.backoff = RECONNECT_MIN;
    this.closed = false;
    this.queue = Promise.resolve(); // engine calls, in order
  }

  async refresh() {
    const i = await this.api.info(this.h);
    Object.assign(this, { name: i.name, displayName: i.displayName, fingerprint: i.fingerprint,
      card: i.card, protection: i.protection, signing: i.signing, suites: i.suites });
    return i;
  }

  // Runs an engine call after the previous ones, then handles its result
  // (packets, events, deadline).
  run(f) {
    const p = this.queue.then(f).then((r) => {
      if (r && r.packets) this.handle(r);
      return r;
    });
    this.queue = p.catch(() => {});
    return p;
  }

  handle({ packets, events, deadline }) {
    for (const p of packets) {
      if (p.link === "bridge" && this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(p.data); // otherwise lost, as on a radio: the engine retries
      }
    }
    for (const ev of events) this.dispatchEvent(new CustomEvent(ev.kind, { detail: ev }));
    clearTimeout(this.timer);
    this.timer = null;
    if (deadline !== null && !this.closed) {
      const wait = Math.max(0, Math.min(deadline - Date.now(), 2 ** 31 - 1));
      this.timer = setTimeout(() => this.run(() => this.api.tick(this.h)), wait);
    }
  }

  // addContact imports a card (Uint8Array, or base64 text) reached over
  // the bridge; result "new", "unchanged" or "replaced".
  addContact(name, card, { replace = false } = {}) {
    return this.run(() => this.api.addContact(this.h, name, bytes(card), replace));
  }

  verifyContact(name, fingerprint) {
    return this.run(() => this.api.verifyContact(this.h, name, fingerprint));
  }

  removeContact(name) {
    return this.run(() => this.api.removeContact(this.h, name));
  }

  contacts() {
    return this.run(() => this.api.contacts(this.h));
  }

  // send queues text for contact and returns its id; "delivery" events
  // with that id follow.
  async send(contact, text) {
    const r = await this.run(() => this.api.send(this.h, contact, String(text)));
    return r.id;
  }

  sign(data) {
    return this.run(() => this.api.sign(this.h, bytes(data)));
  }

  // connect keeps a WebSocket to the daemon's bridge open (reconnecting
  // with backoff) and starts the engine's timers.
  connect(url) {
    this.url = url;
    this.dial();
    this.run(() => this.api.tick(this.h));
  }

  dial() {
    if (this.closed || !this.url) return;
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = RECONNECT_MIN;
      this.dispatchEvent(new CustomEvent("link", { detail: { state: "connected", url: this.url } }));
      this.run(() => this.api.tick(this.h)); // what waited for the link goes now
    };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        let msg;
        try { msg = JSON.parse(m.data); } catch { return; }
        if (msg && msg.type === "hello" && typeof msg.card === "string") {
          this.dispatchEvent(new CustomEvent("hello", { detail: { card: fromBase64(msg.card), fingerprint: msg.fingerprint } }));
        }
        return;
      }
      const data = new Uint8Array(m.data);
      this.run(() => this.api.receive(this.h, "bridge", "", data));
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.dispatchEvent(new CustomEvent("link", { detail: { state: "disconnected", url: this.url } }));
      if (!this.closed) {
        setTimeout(() => this.dial(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX);
      }
    };
  }

  // offerCard sends this node's card over the bridge; the daemon shows it
  // to its user as a card offer to check and import (it imports nothing
  // by itself).
  offerCard() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected to a bridge");
    this.ws.send(JSON.stringify({ type: "card", card: toBase64(this.card) }));
  }

  // close saves the state, closes the sessions and the bridge, and
  // releases the identity for other tabs.
  async close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
    await this.queue;
    await this.api.close(this.h);
  }
}

function bytes(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (typeof x === "string") return fromBase64(x.trim());
  throw new TypeError("bytes expected: Uint8Array, ArrayBuffer or base64 text");
}

export function toBase64(b) {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return btoa(s);
}

export function fromBase64(s) {
  const t = atob(s);
  const b = new Uint8Array(t.length);
  for (let i = 0; i < t.length; i++) b[i] = t.charCodeAt(i);
  return b;
}
