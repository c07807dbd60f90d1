/* wasupd simulator: the page surface of WhatsApp Web as docs/simulator.md describes it.
 * Module names, event signatures (model, value), the QR payload, message ids and the DOM
 * follow reference/whatsapp-web.md. The "server" is the simulator, reached over a WebSocket. */
(function () {
  "use strict";
  const CFG = window.__SIM__ || { version: "2.3000.0", firstRefMs: 60000, nextRefMs: 20000, syncDelayMs: 2000, pageWeightMiB: 0 };

  // ---- events and models (Backbone-like, as WhatsApp Web's) ----
  class Emitter {
    constructor() { this._ev = {}; }
    on(names, fn) { for (const n of names.split(/\s+/)) (this._ev[n] = this._ev[n] || []).push(fn); return this; }
    off(names, fn) {
      for (const n of (names || "").split(/\s+/)) {
        if (!fn) delete this._ev[n]; else this._ev[n] = (this._ev[n] || []).filter((f) => f !== fn && f._orig !== fn);
      }
      return this;
    }
    once(name, fn) { const w = (...a) => { this.off(name, w); fn(...a); }; w._orig = fn; return this.on(name, w); }
    trigger(name, ...args) { for (const fn of (this._ev[name] || []).slice()) { try { fn(...args); } catch (e) { console.error(e); } } }
    emit(name, ...args) { this.trigger(name, ...args); }
  }
  class Model extends Emitter {
    constructor(attrs) { super(); Object.assign(this, attrs || {}); }
    set(attr, value) {
      if (this[attr] === value) return;
      this[attr] = value;
      this.trigger("change:" + attr, this, value);
      this.trigger("change", this);
      if (this.collection) { this.collection.trigger("change:" + attr, this, value); this.collection.trigger("change", this); }
    }
  }
  class Collection extends Emitter {
    constructor(modelClass) { super(); this._models = new Map(); this.modelClass = modelClass; }
    _key(id) { return id && id._serialized ? id._serialized : String(id); }
    get(id) { return this._models.get(this._key(id)); }
    add(model) {
      const k = this._key(model.id);
      if (this._models.has(k)) return this._models.get(k);
      model.collection = this; this._models.set(k, model); this.trigger("add", model); return model;
    }
    remove(model) { this._models.delete(this._key(model.id)); this.trigger("remove", model); }
    getModelsArray() { return Array.from(this._models.values()); }
    get length() { return this._models.size; }
    getMessagesById(ids) { return { messages: ids.map((i) => this.get(i)).filter(Boolean) }; }
  }

  // ---- ids ----
  class Wid {
    constructor(s) {
      const [user, server] = String(s).split("@");
      this.user = user; this.server = server || "c.us"; this._serialized = `${this.user}@${this.server}`;
    }
    isGroup() { return this.server === "g.us"; }
    isLid() { return this.server === "lid"; }
    isStatus() { return this._serialized === "status@broadcast"; }
    isUser() { return this.server === "c.us"; }
    toString() { return this._serialized; }
    equals(o) { return o && String(o) === this._serialized; }
  }
  const createWid = (s) => (s instanceof Wid ? s : new Wid(s));
  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
  class MsgKey {
    constructor({ from, to, id, participant, selfDir, fromMe, remote }) {
      this.fromMe = fromMe !== undefined ? fromMe : selfDir === "out";
      this.remote = createWid(remote || to);
      this.id = id;
      this.participant = participant ? createWid(participant) : undefined;
      this._serialized = `${this.fromMe}_${this.remote._serialized}_${this.id}` + (this.participant ? `_${this.participant._serialized}` : "");
    }
    toString() { return this._serialized; }
    static async newId() { return "3EB0" + hex(8); }
    static newId_DEPRECATED() { return "3EB0" + hex(8); }
  }
  class Msg extends Model {
    serialize() {
      return { id: { fromMe: this.id.fromMe, remote: this.id.remote._serialized, id: this.id.id, _serialized: this.id._serialized },
        ack: this.ack, body: this.body, type: this.type, t: this.t, from: String(this.from), to: String(this.to),
        author: this.author, isNewMsg: this.isNewMsg, self: this.self, local: this.local, star: false, broadcast: false,
        isForwarded: false, forwardingScore: 0, hasReaction: false, mentionedJidList: [] };
    }
  }
  class Chat extends Model { serialize() { return { id: this.id, name: this.name, isGroup: this.id.isGroup(), unreadCount: 0 }; } }

  // ---- the stores ----
  const Socket = new Model({ state: "OPENING", hasSynced: false, stream: "DISCONNECTED" });
  const Conn = new Model({ ref: undefined, wid: undefined, pushname: "", platform: "android", battery: 100 });
  Conn.serialize = () => ({ ref: Conn.ref, wid: Conn.wid, pushname: Conn.pushname, platform: Conn.platform, battery: Conn.battery });
  const Cmd = new Emitter(); Cmd.isMainLoaded = false;
  const Stream = new Model({ mode: "QR", info: "OPENING", available: false });
  Stream.markAvailable = () => Stream.set("available", true);
  Stream.markUnavailable = () => Stream.set("available", false);
  const MsgColl = new Collection(Msg);
  const ChatColl = new Collection(Chat);
  let me = null; let progress = 0; let weight = [];
  const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
  const keys = { noise: b64(crypto.getRandomValues(new Uint8Array(32))), identity: b64(crypto.getRandomValues(new Uint8Array(32))),
    adv: b64(crypto.getRandomValues(new Uint8Array(32))), platform: "1" };
  let pairingType = "QR";

  // ---- server connection ----
  let ws = null; let pending = new Map(); let qid = 0; let backoff = 500;
  function send(obj) { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); }
  function query(obj) {
    return new Promise((resolve) => { const id = ++qid; pending.set(id, resolve); send({ ...obj, qid: id }); });
  }

  // ---- IndexedDB: link credentials live in the browser profile ----
  let idbDelayMs = 0;
  function idb() {
    return new Promise((res, rej) => {
      const r = indexedDB.open("wawc", 1);
      r.onupgradeneeded = () => r.result.createObjectStore("user");
      r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error);
    });
  }
  async function idbGet(key) {
    const db = await idb();
    return new Promise((res) => { const t = db.transaction("user").objectStore("user").get(key); t.onsuccess = () => res(t.result); t.onerror = () => res(undefined); });
  }
  async function idbPut(key, value) {
    if (idbDelayMs) await new Promise((r) => setTimeout(r, idbDelayMs));
    const db = await idb();
    return new Promise((res) => {
      const tx = db.transaction("user", "readwrite");
      if (value === undefined) tx.objectStore("user").delete(key); else tx.objectStore("user").put(value, key);
      tx.oncomplete = () => res(); tx.onerror = () => res();
    });
  }

  // ---- DOM ----
  const app = document.getElementById("app");
  function render(html) { app.innerHTML = html; }
  function renderLoading() { render(`<div><progress value="${progress}" max="100"></progress><div class="loading-text">WhatsApp</div></div>`); }
  function renderLanding(payload, idle) {
    render(`<div><div class="landing-wrapper"><div><h1 class="landing-title">Use WhatsApp on your computer</h1>
      <ol class="landing-steps"><li>Open WhatsApp on your phone</li><li>Tap Menu or Settings and select Linked devices</li>
      <li>Point your phone to this screen to capture the code</li></ol><div class="pairing"></div></div>
      <div data-ref="${payload || ""}"><canvas></canvas>${idle ? '<span><button type="button">Click to reload QR code</button></span>' : ""}</div></div></div>`);
    if (idle) app.querySelector("div[data-ref] > span > button").addEventListener("click", () => Cmd.refreshQR());
  }
  function drawQr(matrix) {
    const canvas = app.querySelector("div[data-ref] canvas"); if (!canvas) return;
    const n = matrix.length, quiet = 4, scale = 6, size = (n + 2 * quiet) * scale;
    canvas.width = size; canvas.height = size;
    const g = canvas.getContext("2d"); g.fillStyle = "#fff"; g.fillRect(0, 0, size, size); g.fillStyle = "#122e31";
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) if (matrix[y][x] === "1") g.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
  }
  function renderMain() {
    const rows = ChatColl.getModelsArray().slice(-8).map((c) => `<div class="chat-row">${c.id._serialized}</div>`).join("");
    render(`<div class="app two" tabindex="-1"><div class="side"><header><span data-icon="chat">&#128172;</span>
      <span data-icon="search">&#128269;</span><span data-icon="menu">&#8942;</span></header>${rows}</div>
      <div class="main"><div>WhatsApp Web<br><small>${me ? me._serialized : ""}</small></div></div></div>`);
  }

  // ---- QR refs ----
  let refs = []; let refTimer = null;
  function showRef(i) {
    clearTimeout(refTimer);
    if (i >= refs.length) { Socket.set("state", "UNPAIRED_IDLE"); renderLanding(app.querySelector("div[data-ref]")?.dataset.ref, true); return; }
    const r = refs[i];
    Conn.set("ref", r.ref);
    renderLanding([r.ref, keys.noise, keys.identity, keys.adv, keys.platform].join(","), false);
    drawQr(r.matrix);
    refTimer = setTimeout(() => showRef(i + 1), i === 0 ? CFG.firstRefMs : CFG.nextRefMs);
  }
  Cmd.refreshQR = () => { Socket.set("state", "UNPAIRED"); send({ t: "refs", keys }); };

  // ---- sync after link or restore ----
  function startSync() {
    Socket.set("state", "CONNECTED"); Socket.set("stream", "CONNECTED"); Stream.set("mode", "SYNCING");
    progress = 0; renderLoading();
    const steps = 4; let k = 0;
    const tick = () => {
      k += 1; progress = Math.round((100 * k) / steps);
      const bar = app.querySelector("progress"); if (bar) bar.value = progress;
      Cmd.trigger("offline_progress_update_from_bridge");
      if (k < steps) setTimeout(tick, CFG.syncDelayMs / steps);
      else { Stream.set("mode", "MAIN"); Stream.set("info", "NORMAL"); renderMain(); Cmd.isMainLoaded = true; Cmd.trigger("main_loaded"); Socket.set("hasSynced", true); }
    };
    setTimeout(tick, CFG.syncDelayMs / steps);
  }
  function ensureChat(wid) { return ChatColl.get(wid._serialized) || ChatColl.add(new Chat({ id: wid, name: wid.user })); }
  function addMessage(m, isNew) {
    const fromMe = m.fromMe !== undefined ? m.fromMe : (me && m.from === me._serialized);
    const remote = fromMe ? m.to : (m.chat || m.from);
    const key = new MsgKey({ fromMe, remote, id: m.id });
    ensureChat(key.remote);
    return MsgColl.add(new Msg({ id: key, ack: fromMe ? 1 : 0, body: m.body, type: m.type || "chat", t: m.t, from: createWid(m.from), to: createWid(m.to), isNewMsg: isNew, self: fromMe ? "out" : "in", local: false }));
  }

  // ---- server messages ----
  const handlers = {
    unpaired: async (m) => {
      if (m.clear) await idbPut("creds", undefined);
      Socket.set("state", "UNPAIRED"); Stream.set("mode", "QR");
      if (pairingType === "QR") send({ t: "refs", keys });
    },
    refs: (m) => { refs = m.refs; showRef(0); },
    code: (m) => { codeWaiter && codeWaiter(m.code); codeWaiter = null; showCode(m.code, m.ttl_ms); },
    paired: async (m) => {
      clearTimeout(refTimer); Socket.set("state", "PAIRING"); Stream.set("info", "PAIRING");
      me = createWid(m.me); Conn.set("wid", me); Conn.set("pushname", m.pushname || "");
      await idbPut("creds", m.creds);
      startSync();
    },
    welcome: (m) => {
      me = createWid(m.me); Conn.set("wid", me); Conn.set("pushname", m.pushname || "");
      for (const h of m.history || []) addMessage(h, false);
      if (Socket.hasSynced) { Socket.set("state", "CONNECTED"); return; }
      startSync();
    },
    msg: (m) => { addMessage(m.msg, true); },
    ack: (m) => {
      const model = MsgColl.get(`true_${m.to}_${m.id}`);
      if (model) model.set("ack", m.ack);
      const w = sendWaiters.get(m.id);
      if (w && (m.ack >= 1 || m.ack < 0)) { sendWaiters.delete(m.id); w(m.ack >= 1 ? "OK" : "ERROR_UNKNOWN"); }
    },
    exists: (m) => { const r = pending.get(m.qid); if (r) { pending.delete(m.qid); r(m.wid); } },
    logout: async () => {
      Cmd.trigger("logout"); await idbPut("creds", undefined);
      location.href = "/?post_logout=1";
    },
    state: (m) => { Socket.set("state", m.state); if (m.state !== "CONNECTED") Stream.set("mode", m.state); },
    fault: (m) => faults[m.kind] && faults[m.kind](m.params || {}),
  };
  const faults = {
    memory: (p) => { for (let i = 0; i < Number(p.mib || 100); i++) weight.push(new Float64Array(131072).fill(i)); },
    slow_idb: (p) => { idbDelayMs = Number(p.seconds || 5) * 1000; },
    hang_close: () => { window.addEventListener("beforeunload", (e) => { e.preventDefault(); e.returnValue = "stay"; }); },
    hang: () => { setTimeout(() => { for (;;) { /* renderer busy forever */ } }, 0); },
  };

  function connect() {
    ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.onopen = async () => { backoff = 500; send({ t: "hello", creds: (await idbGet("creds")) || null }); };
    ws.onmessage = (e) => { const m = JSON.parse(e.data); const h = handlers[m.t]; if (h) h(m); };
    ws.onclose = () => {
      for (const r of pending.values()) r(undefined);
      pending.clear();
      if (Socket.state === "CONNECTED") Socket.set("state", "TIMEOUT");
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
    };
  }

  // ---- pairing code ----
  let codeWaiter = null; let codeTimer = null;
  function showCode(code, ttl) {
    const el = app.querySelector(".pairing");
    if (el) el.innerHTML = `<div class="pairing-code" data-code="${code}">${code.slice(0, 4)}-${code.slice(4)}</div>`;
    clearTimeout(codeTimer);
    codeTimer = setTimeout(() => { if (["UNPAIRED", "UNPAIRED_IDLE"].includes(Socket.state)) send({ t: "pair_code", phone: codePhone }); }, ttl);
  }
  let codePhone = "";
  const AltLinking = {
    setPairingType: (t) => { pairingType = t; },
    initializeAltDeviceLinking: async () => { clearTimeout(refTimer); },
    startAltLinkingFlow: (phone) => new Promise((resolve) => { codePhone = String(phone); codeWaiter = resolve; send({ t: "pair_code", phone: codePhone }); }),
    initializeQRLinking: async () => { pairingType = "QR"; send({ t: "refs", keys }); },
  };

  // ---- sending ----
  const sendWaiters = new Map();
  function addAndSendMsgToChat(chat, data) {
    const key = data.id instanceof MsgKey ? data.id : new MsgKey(data.id);
    const model = MsgColl.add(new Msg({ ...data, id: key, ack: 0, self: "out", isNewMsg: true }));
    const result = new Promise((resolve) => { sendWaiters.set(key.id, resolve); });
    send({ t: "send", id: key.id, to: chat.id._serialized, body: data.body });
    return [Promise.resolve(model), result];
  }

  // ---- the module loader ----
  const modules = {
    WAWebSocketModel: { Socket }, WAWebConnModel: { Conn }, WAWebCmd: { Cmd }, WAWebStreamModel: { Stream },
    WAWebCollections: { Msg: MsgColl, Chat: ChatColl, WAWebCallCollection: new Collection(Model) },
    WAWebWidFactory: { createWid, createUserWid: (u) => createWid(`${u}@c.us`) },
    WAWebMsgKey: MsgKey,
    WAWebUserPrefsMeUser: { getMaybeMePnUser: () => me, getMaybeMeLidUser: () => null, getMeUser: () => me },
    WAWebSendMsgChatAction: { addAndSendMsgToChat },
    WAWebFindChatAction: {
      findOrCreateLatestChat: async (wid) => {
        wid = createWid(wid);
        const existing = ChatColl.get(wid._serialized); if (existing) return { chat: existing, created: false };
        const found = await query({ t: "exists", wid: wid._serialized });
        if (!found) throw new Error(`chat ${wid._serialized} not found`);
        return { chat: ensureChat(wid), created: true };
      },
    },
    WAWebQueryExistsJob: { queryWidExists: async (wid) => { const w = await query({ t: "exists", wid: String(wid) }); return w ? { wid: createWid(w) } : null; } },
    WAWebGetEphemeralFieldsMsgActionsUtils: { getEphemeralFields: () => ({}) },
    WAWebChatGetters: { getIsNewsletter: () => false, getIsBroadcast: () => false, getIsGroup: (c) => c.id.isGroup() },
    WAWebUpdateUnreadChatAction: { sendSeen: async () => true },
    WAWebOfflineHandler: { OfflineMessageHandler: { getOfflineDeliveryProgress: () => progress } },
    WABase64: { encodeB64: (bytes) => b64(bytes) },
    WAWebAltDeviceLinkingApi: AltLinking,
    WAWebCompanionRegClientUtils: { DEVICE_PLATFORM: 1 },
    WAWebAdvSignatureApi: { getADVSecretKey: () => keys.adv },
    WAWebUserPrefsInfoStore: { waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: keys.noise } }) } },
    WAWebSignalStoreApi: { waSignalStore: { getRegistrationInfo: async () => ({ identityKeyPair: { pubKey: keys.identity } }) } },
    WAWebMiscBrowserUtils: { info: () => ({ os: "Linux", name: "Chrome" }) },
    WALinkify: { findLink: () => null, findLinks: () => [] },
  };
  Socket.logout = () => { send({ t: "logout" }); };
  Socket.takeover = () => { send({ t: "hello", creds: null }); };
  Socket.reconnect = () => { if (ws) ws.close(); };
  Socket.poke = () => {};

  // Meta's loader throws for unknown names, as the real page does.
  function requireModule(name) {
    if (!Object.prototype.hasOwnProperty.call(modules, name)) throw new Error(`Requiring unknown module "${name}"`);
    return modules[name];
  }

  // ---- boot: the page "loads" before its modules are reachable ----
  renderLoading();
  for (let i = 0; i < Number(CFG.pageWeightMiB || 0); i++) weight.push(new Float64Array(131072).fill(i));
  setTimeout(() => {
    window.require = requireModule;
    window.Debug = { VERSION: CFG.version };
    connect();
  }, Math.min(500, CFG.syncDelayMs / 4));
})();
