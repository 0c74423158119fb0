// The whole flow of a browser node, for people and for the end-to-end test
// (tests/web), which drives the same functions through window.app.
import { load, toBase64, fromBase64 } from "./loramesh.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const app = {
  lm: null, node: null, hello: null,
  messages: [],   // {contact, text, verified}
  states: {},     // message id -> [states in order]
  events: [],     // every event, for the test
  link: "disconnected",
};
window.app = app;

function log(line) {
  const div = document.createElement("div");
  div.textContent = line; // peers' text is never parsed as HTML
  $("log").append(div);
}

app.start = async ({ name, displayName, protect = "none", suites } = {}) => {
  if (app.node) await app.node.close();
  const node = await app.lm.open({ name, displayName, protect, suites, create: true });
  app.node = node;
  for (const kind of ["message", "delivery", "session", "stranger", "address", "dropped", "link", "hello"]) {
    node.addEventListener(kind, (e) => { app.events.push({ kind, ...e.detail }); on[kind]?.(e.detail); });
  }
  $("fp").textContent = node.fingerprint;
  $("prot").textContent = `(${node.signing}; keys ${node.protection === "prf" ? "wrapped by a security key" : "non-extractable, plain on disk"})`;
  $("card").value = toBase64(node.card);
  await app.refresh();
  return { fingerprint: node.fingerprint, card: toBase64(node.card), protection: node.protection, signing: node.signing };
};

const on = {
  message(d) { app.messages.push(d); log(`${d.contact}${d.verified ? "" : "?"}: ${d.text}`); },
  delivery(d) { (app.states[d.id] ||= []).push(d.state); log(`  message ${d.id} to ${d.contact}: ${d.state}${d.reason ? " (" + d.reason + ")" : ""}`); app.refresh(); },
  session(d) { log(`  secure session with ${d.contact}`); app.refresh(); },
  link(d) { app.link = d.state; $("link").textContent = d.state; $("offer").disabled = d.state !== "connected"; },
  hello(d) {
    app.hello = d;
    $("hello").textContent = `the daemon at this bridge has fingerprint ${d.fingerprint}: compare it with \`loramesh id\` there, then import it`;
    $("ccard").value = toBase64(d.card);
  },
};

app.connect = (url) => { app.node.connect(url); };
app.offer = () => app.node.offerCard();
app.importContact = async (name, card) => {
  const r = await app.node.addContact(name, card);
  await app.refresh();
  return r;
};
app.verify = async (name, fp) => { await app.node.verifyContact(name, fp); await app.refresh(); return true; };
app.send = async (to, text) => {
  const id = await app.node.send(to, text);
  log(`me -> ${to}: ${text}`);
  return id;
};
app.refresh = async () => {
  const cs = await app.node.contacts();
  $("contacts").replaceChildren(...cs.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${c.contact} ${c.fingerprint} ${c.verified ? "verified" : "NOT verified"}${c.session ? ", session" : ""}${c.queued ? `, ${c.queued} queued` : ""} (${c.displayName})`;
    return li;
  }));
  const sel = $("to"), cur = sel.value;
  sel.replaceChildren(...cs.map((c) => new Option(c.contact, c.contact)));
  if (cur) sel.value = cur;
  return cs;
};

$("open").onclick = () => app.start({ name: $("name").value, displayName: $("display").value, protect: $("protect").value }).catch((e) => alert(e.message));
$("connect").onclick = () => app.connect($("bridge").value);
$("offer").onclick = () => app.offer();
$("import").onclick = () => app.importContact($("cname").value, fromBase64($("ccard").value.trim())).catch((e) => alert(e.message));
$("verify").onclick = () => app.verify($("cname").value, $("cfp").value).then(() => log(`${$("cname").value} verified`), (e) => alert(e.message));
$("send").onclick = () => { app.send($("to").value, $("text").value).catch((e) => alert(e.message)); $("text").value = ""; };

app.ready = (async () => {
  app.lm = await load();
  const f = app.lm.features();
  app.features = f;
  $("custody").textContent = `custody in this browser: ${f.custody} (locked memory: ${f.lockedMemory}, erasure: ${f.erasure}, ` +
    `wasm memory readable by this page's scripts: ${f.memoryReadable}). Keys at rest: ${f.keysAtRest.none}; or ${f.keysAtRest.prf}.`;
  if (params.get("bridge")) $("bridge").value = params.get("bridge");
  return true;
})();
