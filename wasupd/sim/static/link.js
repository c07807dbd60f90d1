/* link.js: the connection to the (simulated) WhatsApp server and the link timelines
 * (§ numbers refer to docs/whatsapp-web.md; §1-§3 here):
 *  cold start  OPENING -> UNPAIRED, 6 refs (change:ref each) -> UNPAIRED_IDLE + reload button
 *  scan        PAIRING -> CONNECTED -> progress 0..100 -> main_loaded -> hasSynced
 *  restore     OPENING -> CONNECTED -> progress -> hasSynced (credentials from IndexedDB)
 *  logout      Cmd logout -> profile wiped -> navigation to /?post_logout=1 -> UNPAIRED */

const Socket = new Model({ state: "OPENING", hasSynced: false, stream: "DISCONNECTED" });
const Conn = new Model({ ref: undefined, wid: undefined, lid: undefined, pushname: "", platform: undefined, battery: 100, plugged: true });
Conn.serialize = () => ({ ref: Conn.ref, wid: Conn.wid, pushname: Conn.pushname, platform: Conn.platform,
  battery: Conn.battery, plugged: Conn.plugged, isResponse: "false", connected: Socket.state === "CONNECTED" });
const Cmd = new Emitter();
Cmd.isMainLoaded = false;
const Stream = new Model({ mode: undefined, info: "OPENING", displayInfo: "OPENING", available: false });
Stream.markAvailable = () => Stream.set("available", true);
Stream.markUnavailable = () => Stream.set("available", false);

const Link = { keys: null, pairingType: "QR", payload: "", matrix: null, syncing: false };
const Net = { ws: null, retryMs: 0, queries: new Map(), nextQid: 1 };

function toServer(obj) {
  if (Net.ws && Net.ws.readyState === WebSocket.OPEN) { Net.ws.send(JSON.stringify(obj)); return true; }
  return false;
}

/** A round trip to the server; rejects if the socket closes first, never settles on a stalled one. */
function query(obj) {
  return new Promise((resolve, reject) => {
    const qid = Net.nextQid++;
    Net.queries.set(qid, { resolve, reject });
    if (!toServer({ ...obj, qid })) { Net.queries.delete(qid); reject(new Error("socket is not connected")); }
  });
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  Net.ws = ws;
  ws.onopen = async () => {
    Net.retryMs = 0;
    const keys = Link.keys;
    toServer({ t: "hello", creds: (await idbGet("user", "creds")) || null,
      keys: { noise: encodeB64(keys.noise), identity: encodeB64(keys.identity), adv: keys.adv, platform: String(DEVICE_PLATFORM) } });
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (handlers[m.t]) handlers[m.t](m);
  };
  ws.onclose = () => {
    if (Net.ws !== ws) return;
    for (const q of Net.queries.values()) q.reject(new Error("socket closed"));
    Net.queries.clear();
    Socket.set({ state: Socket.hasSynced || Conn.wid ? "TIMEOUT" : "OPENING", stream: "DISCONNECTED" });
    Stream.set({ info: "OFFLINE", displayInfo: "OFFLINE" });
    // Reconnect with backoff, scaled like every other duration but never a busy loop.
    Net.retryMs = Math.min(Math.max(Net.retryMs * 2, Math.max(100, 1000 * CFG.timeFactor)), Math.max(500, 8000 * CFG.timeFactor));
    setTimeout(connect, Net.retryMs);
  };
}

Socket.on("change:state", (model, state) => { toServer({ t: "state", state }); renderBanner(state); });

// ---- QR refs (§1b) ----
handlers.unpaired = (m) => {
  // Credentials the server refused (revoked, or from another world) are forgotten; the keys stay.
  if (m.clear) Promise.all([idbDelete("user", "creds"), idbClear("message")]).catch((e) => console.error(e));
  Conn.set("wid", undefined);
  Socket.set("state", "UNPAIRED");
  Stream.set({ mode: "QR", info: "NORMAL", displayInfo: "NORMAL" });
};

// The server rotates the refs (first 60 s, then 20 s each, scaled) and says when they ran out.
handlers.ref = (m) => {
  if (Link.pairingType !== "QR" || Socket.state === "CONNECTED" || Socket.state === "PAIRING") return;
  Link.payload = m.payload;
  Link.matrix = m.matrix;
  if (Socket.state !== "UNPAIRED") Socket.set("state", "UNPAIRED");
  renderQr(m.payload, m.matrix, false);
  Conn.set("ref", m.ref);
};

handlers.idle = () => {
  if (Link.pairingType !== "QR") return;
  Socket.set("state", "UNPAIRED_IDLE"); // the refs ran out: a reload button instead of a QR
  renderQr(Link.payload, Link.matrix, true);
};

Cmd.refreshQR = () => {
  if (Socket.state !== "UNPAIRED" && Socket.state !== "UNPAIRED_IDLE") return;
  Link.pairingType = "QR";
  Socket.set("state", "UNPAIRED");
  toServer({ t: "refs" });
};

// ---- pairing code (§3) ----
const Code = { waiter: null, timer: 0, refreshes: 0, phone: "", code: "" };
const AltLinking = {
  setPairingType(type) { Link.pairingType = type === "ALT_DEVICE_LINKING" ? type : "QR"; },
  async initializeAltDeviceLinking() {
    Link.pairingType = "ALT_DEVICE_LINKING";
    toServer({ t: "alt_mode" });
    renderCode("", false);
  },
  startAltLinkingFlow(phone, showNotification) {
    Code.phone = String(phone).replace(/\D/g, "");
    Code.refreshes = 0;
    return requestCode();
  },
  async initializeQRLinking() {
    clearTimeout(Code.timer);
    Link.pairingType = "QR";
    Code.code = "";
    toServer({ t: "qr_mode" });
  },
};

function requestCode() {
  clearTimeout(Code.timer);
  if (Code.waiter) Code.waiter.reject(new Error("superseded by a newer pairing code request"));
  return new Promise((resolve, reject) => {
    Code.waiter = { resolve, reject };
    if (!toServer({ t: "pair_code", phone: Code.phone })) { Code.waiter = null; reject(new Error("socket is not connected")); }
  });
}

handlers.code = (m) => {
  Code.code = m.code;
  renderCode(m.code, false);
  if (Code.waiter) { Code.waiter.resolve(m.code); Code.waiter = null; }
  Code.timer = setTimeout(() => {
    if (Socket.state !== "UNPAIRED" && Socket.state !== "UNPAIRED_IDLE") return;
    if (Code.refreshes >= 5) { renderCode(Code.code, true); Socket.set("state", "UNPAIRED_IDLE"); return; }
    Code.refreshes += 1; // the page refreshes the code on its own, as WhatsApp's does
    requestCode().catch(() => {});
  }, CFG.codeRefreshMs);
};
handlers.code_error = (m) => { if (Code.waiter) { Code.waiter.reject(new Error(m.error)); Code.waiter = null; } };

// ---- linked: pairing, restore, sync (§2b) ----
handlers.paired = (m) => {
  clearTimeout(Code.timer);
  Socket.set("state", "PAIRING");
  Stream.set({ info: "PAIRING", displayInfo: "PAIRING" });
  renderLoading(0);
  idbPut("user", "creds", m.creds).catch((e) => console.error(e)); // a slow flush must not hold up the link
  setTimeout(() => connected(m), CFG.pairingMs);
};

handlers.welcome = (m) => connected(m);

function connected(m) {
  Conn.set({ wid: createWid(m.me), lid: m.lid ? createWid(m.lid) : undefined, pushname: m.pushname || "", platform: m.platform });
  Lids.enabled = !!m.lid; // the server sends an own LID to migrated accounts only (§4e)
  learnLids(m.lid ? [[m.lid, m.me]] : []);
  loadChats(m.chats || []);
  for (const h of m.history || []) addMessage(h, false);
  Socket.set({ state: "CONNECTED", stream: "CONNECTED" });
  if (Socket.hasSynced) { // a reconnect: no new sync, just what arrived meanwhile
    Stream.set({ mode: "MAIN", info: "NORMAL", displayInfo: "NORMAL" });
    for (const o of m.offline || []) receiveMessage(o);
    resendPending(m.history || []);
    return;
  }
  sync(m);
}

/** CONNECTED -> offline progress 0..100 (offline messages arrive meanwhile) -> main_loaded -> hasSynced. */
function sync(m) {
  if (Link.syncing) return;
  Link.syncing = true;
  Stream.set({ mode: "SYNCING", info: "SYNCING", displayInfo: "SYNCING" });
  renderLoading(0);
  const offline = (m.offline || []).slice();
  const steps = 5;
  let step = 0;
  const tick = () => {
    step += 1;
    setProgress(Math.round((100 * step) / steps));
    Cmd.trigger("offline_progress_update_from_bridge");
    for (const o of offline.splice(0, Math.ceil(offline.length / (steps - step + 1)))) receiveMessage(o);
    if (step < steps) { setTimeout(tick, CFG.syncMs / steps); return; }
    Link.syncing = false;
    Stream.set({ mode: "MAIN", info: "NORMAL", displayInfo: "NORMAL" });
    renderMain();
    Cmd.isMainLoaded = true;
    Cmd.trigger("main_loaded");
    Socket.set("hasSynced", true);
    resendPending(m.history || []);
  };
  setTimeout(tick, CFG.syncMs / steps);
}

handlers.state = (m) => {
  Socket.set("state", m.state);
  if (m.state === "CONNECTED") Stream.set({ mode: Socket.hasSynced ? "MAIN" : "SYNCING" });
  else Stream.set({ mode: m.state });
};

// ---- logout (§2b): Cmd event, profile wiped, navigation to ?post_logout=1 ----
handlers.logout = async (m) => {
  Cmd.trigger(m.event || "logout");
  try { await wipeProfile(); } catch (e) { console.error(e); }
  location.assign("/?post_logout=1");
};

Socket.logout = () => { if (!toServer({ t: "logout" })) handlers.logout({ event: "logout" }); };
Socket.takeover = () => { toServer({ t: "takeover" }); };
Socket.reconnect = () => { if (Net.ws) Net.ws.close(); };
Socket.poke = () => { if (Socket.state === "UNPAIRED_IDLE") Cmd.refreshQR(); };
