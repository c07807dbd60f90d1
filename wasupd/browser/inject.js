/* Injected into every document of a session's page (Page.addScriptToEvaluateOnNewDocument).
 *
 * Listens to WhatsApp Web's own modules and reports each event to the daemon through a DevTools
 * binding (no polling where the page has an event); if the modules are unreachable it falls
 * back to watching the DOM. It also installs `window.__wasupd`, the page functions the driver
 * calls (send, resolve, probe, pairing...). Every WhatsApp name comes from CFG, built by
 * wasupd/browser/whatsapp.py; __CONFIG__ is replaced with it before injection. */
(function () {
  "use strict";
  const CFG = __CONFIG__;
  if (window.__wasupd) return;
  // Fire and forget: a binding call is one DevTools event, no round trip.
  const report = (obj) => { try { window[CFG.binding](JSON.stringify(obj)); } catch (e) { /* page closing */ } };
  const M = (key) => window.require(CFG.modules[key]);
  const str = (w) => (w === undefined || w === null ? null : String(w._serialized || w));
  const api = { mode: "waiting", pairing: false };
  window.__wasupd = api;

  // ---- reports from the modules ----------------------------------------------------------
  function me() {
    try { const w = M("meUser").getMaybeMePnUser(); if (w) return str(w); } catch (e) { /* not linked */ }
    try { return str(M("conn").Conn.wid); } catch (e) { return null; }
  }
  function stateReport() {
    const S = M("socket").Socket;
    report({ k: "state", state: S.state, synced: !!S.hasSynced, me: me() });
  }
  async function qrPayload(ref) {
    // The 5-part string WhatsApp's own page renders (ref, noise key, identity key, ADV secret,
    // platform; reference §1a); the DOM's data-ref attribute holds the same when this fails.
    try {
      const b64 = M("base64").encodeB64;
      const enc = (k) => (typeof k === "string" ? k : b64(k));
      const noise = await M("prefsInfo").waNoiseInfo.get();
      const reg = await M("signalStore").waSignalStore.getRegistrationInfo();
      const adv = await M("advSignature").getADVSecretKey();  // a promise in some builds
      return [ref, enc(noise.staticKeyPair.pubKey), enc(reg.identityKeyPair.pubKey),
        enc(adv), M("regClient").DEVICE_PLATFORM].join(",");
    } catch (e) {
      const el = document.querySelector(CFG.qrSelector);
      return el ? el.getAttribute(CFG.qrAttribute) : null;
    }
  }
  async function qrReport(ref) {
    if (ref && !api.pairing) report({ k: "qr", ref, payload: await qrPayload(ref) });
  }
  function serializeMsg(msg) {
    const s = msg.serialize ? msg.serialize() : msg;
    const id = s.id || {};
    return { wa_id: str(id), id: id.id, chat_id: str(id.remote), from_me: !!id.fromMe,
      sender: str(s.author || s.from) || "", body: s.body || "", type: s.type, t: s.t, ack: s.ack, local: !!s.local };
  }
  function onMsgAdd(msg) {
    // Only what came from the server: our own sends are added locally first.
    if (!msg.isNewMsg || msg.local) return;
    if (msg.type === CFG.ciphertext && msg.once) {  // not decrypted yet (reference §4c)
      msg.once("change:type", () => report({ k: "msg", msg: serializeMsg(msg) }));
      return;
    }
    report({ k: "msg", msg: serializeMsg(msg) });
  }

  function attachModules() {
    const Socket = M("socket").Socket, Conn = M("conn").Conn, Cmd = M("cmd").Cmd;
    const Msg = M("collections").Msg;
    api.mode = "modules";
    Socket.on("change:state", stateReport);
    Socket.on("change:hasSynced", stateReport);
    Conn.on("change:ref", (model, ref) => { qrReport(ref); });
    Cmd.on("logout", () => report({ k: "logout", reason: "logout" }));
    Cmd.on("logout_from_bridge", () => report({ k: "logout", reason: "logout_from_bridge" }));
    Cmd.on("offline_progress_update_from_bridge", () => {
      let percent = null;
      try { percent = M("offline").OfflineMessageHandler.getOfflineDeliveryProgress(); } catch (e) { /* optional */ }
      report({ k: "progress", percent });
    });
    Msg.on("add", onMsgAdd);
    Msg.on("change:ack", (msg, ack) => report({ k: "ack", msg: serializeMsg(msg), ack }));
    report({ k: "attached", mode: "modules", version: window[CFG.readyGlobal][CFG.readyField] });
    // After listening, read once: hasSynced may already be true (a fast restore), in which
    // case no change event will ever come (reference §2b).
    stateReport();
    if (CFG.qrStates.includes(Socket.state)) qrReport(Conn.ref);
  }

  // ---- DOM fallback: what the page shows (reference §1c, §2c) ----------------------------
  function attachDom(why) {
    api.mode = "dom";
    report({ k: "attached", mode: "dom", why });
    let last = "";
    const look = () => {
      const box = document.querySelector(CFG.qrSelector);
      const seen = { k: "dom", ref: box ? box.getAttribute(CFG.qrAttribute) : null,
        idle: !!document.querySelector(CFG.reloadSelector), main: !!document.querySelector(CFG.mainSelector) };
      const key = JSON.stringify(seen);
      if (key !== last) { last = key; report(seen); }
    };
    new MutationObserver(look).observe(document.documentElement,
      { subtree: true, childList: true, attributes: true, attributeFilter: [CFG.qrAttribute] });
    look();
  }

  // ---- readiness: no event announces the module loader, so look for it (as wwebjs does) ---
  function modulesReady() {
    const g = window[CFG.readyGlobal];
    return g && g[CFG.readyField] !== undefined && typeof window.require === "function";
  }
  const started = Date.now();
  const wait = setInterval(() => {
    if (modulesReady()) {
      clearInterval(wait);
      try {
        for (const key of CFG.coreModules) M(key);
      } catch (e) {
        attachDom("module missing: " + e.message);
        return;
      }
      try { attachModules(); } catch (e) { report({ k: "error", message: "attaching to WhatsApp Web failed: " + e }); }
    } else if (Date.now() - started > CFG.modulesTimeoutMs) {
      clearInterval(wait);
      if (document.querySelector(CFG.qrSelector) || document.querySelector(CFG.mainSelector)) attachDom("no module loader");
      else report({ k: "error", message: `WhatsApp Web did not load (no module loader after ${CFG.modulesTimeoutMs / 1000} s)` });
    }
  }, 100);

  // ---- page functions the driver calls (page.evaluate) ----------------------------------
  function needModules() {
    if (api.mode !== "modules") throw new Error(`WhatsApp Web's modules are not reachable (mode: ${api.mode})`);
  }
  api.me = () => { needModules(); return me(); };
  api.state = () => { needModules(); const S = M("socket").Socket; return { state: S.state, synced: !!S.hasSynced, me: me() }; };
  api.newIds = async (n) => { needModules(); const K = M("msgKey"); const out = []; for (let i = 0; i < n; i++) out.push(String(await K.newId())); return out; };
  api.exists = async (chatId) => {
    needModules();
    const r = await M("queryExists").queryWidExists(M("widFactory").createWid(chatId));
    return r && r.wid ? str(r.wid) : null;
  };
  api.resolve = async (chatId) => {  // a known chat needs no server round trip
    needModules();
    if (M("collections").Chat.get(chatId)) return chatId;
    return await api.exists(chatId);
  };
  api.hasChat = (chatId) => { needModules(); return !!M("collections").Chat.get(chatId); };
  api.msgExists = (key) => { needModules(); return !!M("collections").Msg.get(key); };
  api.send = async (chatId, body, id, type) => {
    // The message as WhatsApp Web's own send path builds it (reference §4b), with our id.
    needModules();
    const wid = M("widFactory").createWid(chatId);
    const found = await M("findChat").findOrCreateLatestChat(wid);
    const chat = found && found.chat;
    if (!chat) return { error: `no chat with ${chatId}` };
    const from = M("meUser").getMaybeMePnUser();
    const MsgKey = M("msgKey");
    const key = new MsgKey({ from, to: chat.id, id, participant: undefined, selfDir: "out" });
    const msg = { id: key, ack: 0, body, from, to: chat.id, local: true, self: "out",
      t: Math.floor(Date.now() / 1000), isNewMsg: true, type, ...M("ephemeral").getEphemeralFields(chat) };
    const [msgPromise, resultPromise] = M("sendMsg").addAndSendMsgToChat(chat, msg);
    await msgPromise;
    const result = await resultPromise;
    const code = typeof result === "string" ? result : (result && (result.messageSendResult || result.status)) || String(result);
    return { key: str(key), result: code };
  };
  api.probe = async (connected) => {
    needModules();
    const state = M("socket").Socket.state;
    if (state !== connected) return { ok: false, why: `Socket.state is ${state}` };
    const mine = me();
    if (!mine) return { ok: false, why: "the account's own number is unknown" };
    return { ok: true, me: mine };
  };
  api.pair = async (phone, notify, pairingType, intervalMs, maxRefreshes) => {
    // Pairing by phone number (reference §3); the code is refreshed every intervalMs while
    // the page is unpaired, like wwebjs's codeInterval, at most maxRefreshes times.
    needModules();
    const L = M("altLinking");
    api.pairing = true;
    L.setPairingType(pairingType);
    await L.initializeAltDeviceLinking();
    const code = String(await L.startAltLinkingFlow(phone, notify));
    clearInterval(api.codeTimer);
    let refreshes = 0;
    api.codeTimer = setInterval(async () => {
      if (!CFG.qrStates.includes(M("socket").Socket.state)) { clearInterval(api.codeTimer); return; }
      refreshes += 1;
      if (refreshes > maxRefreshes) { clearInterval(api.codeTimer); report({ k: "code_exhausted", refreshes: maxRefreshes }); return; }
      try { report({ k: "code", code: String(await L.startAltLinkingFlow(phone, notify)), refresh: refreshes }); }
      catch (e) { report({ k: "error_soft", message: "pairing code refresh failed: " + e }); }
    }, intervalMs);
    return code;
  };
  api.reloadQr = (timeoutMs) => new Promise((resolve) => {
    // The reload button real WhatsApp Web shows when refs run out (reference §1b-c); it may
    // render after the state change, so wait for it; Cmd.refreshQR() is the older route.
    const click = () => { const b = document.querySelector(CFG.reloadSelector); if (b) { b.click(); return true; } return false; };
    if (click()) { resolve("button"); return; }
    const obs = new MutationObserver(() => { if (click()) { obs.disconnect(); clearTimeout(timer); resolve("button"); } });
    obs.observe(document.documentElement, { subtree: true, childList: true });
    const timer = setTimeout(() => {
      obs.disconnect();
      try { const Cmd = M("cmd").Cmd; if (typeof Cmd.refreshQR === "function") { Cmd.refreshQR(); resolve("refreshQR"); return; } } catch (e) { /* no modules */ }
      resolve(null);
    }, timeoutMs);
  });
  api.logout = () => { needModules(); M("socket").Socket.logout(); return true; };
})();
