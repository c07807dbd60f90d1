/* Injected into every document of a session's page (Page.addScriptToEvaluateOnNewDocument).
 *
 * Listens to WhatsApp Web's own modules and reports each event to the daemon through a DevTools
 * binding (no polling where the page has an event); if the modules are unreachable it falls
 * back to watching the DOM. It also installs `window.__wasupd`, the page functions the driver
 * calls (send, resolve, probe, pairing...).
 *
 * This file holds no WhatsApp name: `W` is the page surface and `CFG` the selectors and states,
 * both filled in from wasupd/browser/whatsapp.py (surface_js, inject_config) before injection. */
(function () {
  "use strict";
  const CFG = __CONFIG__;
  if (window.__wasupd) return;
  const W = __SURFACE__;
  // Fire and forget: a binding call is one DevTools event, no round trip.
  const report = (obj) => { try { window[CFG.binding](JSON.stringify(obj)); } catch (e) { /* page closing */ } };
  const api = { mode: "waiting", pairing: false };
  window.__wasupd = api;

  // ---- reports from the modules ----------------------------------------------------------
  const stateReport = () => report({ k: "state", ...W.state(), me: W.me() });
  async function qrReport(ref) {
    if (!ref || api.pairing) return;
    let payload;
    try { payload = await W.qrPayload(ref); } catch (e) {  // the page shows the same in the DOM
      const el = document.querySelector(CFG.qrSelector);
      payload = el ? el.getAttribute(CFG.qrAttribute) : null;
    }
    report({ k: "qr", ref, payload });
  }

  function attachModules() {
    api.mode = "modules";
    W.onState(stateReport);
    W.onRef(qrReport);
    W.onLogout((reason) => report({ k: "logout", reason }));
    W.onProgress((percent) => report({ k: "progress", percent }));
    W.onMessage((msg) => report({ k: "msg", msg }));
    W.onAck((msg, ack) => report({ k: "ack", msg, ack }));
    report({ k: "attached", mode: "modules", version: W.version() });
    // After listening, read once: the page may already be synced (a fast restore), and then no
    // change event will ever come.
    stateReport();
    if (CFG.qrStates.includes(W.state().state)) qrReport(W.ref());
  }

  // ---- DOM fallback: what the page shows -------------------------------------------------
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
  const started = Date.now();
  const wait = setInterval(() => {
    if (W.ready()) {
      clearInterval(wait);
      try {
        for (const key of CFG.coreModules) W.require(key);
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
  const modules = (fn) => (...args) => {
    if (api.mode !== "modules") throw new Error(`WhatsApp Web's modules are not reachable (mode: ${api.mode})`);
    return fn(...args);
  };
  api.newIds = modules(async (n) => { const out = []; for (let i = 0; i < n; i++) out.push(await W.newId()); return out; });
  api.exists = modules(W.exists);
  api.resolve = modules(W.resolveUser);  // {found, pn, lid}
  api.hasChat = modules(W.hasChat);
  api.msgExists = modules(W.msgExists);
  api.send = modules(W.send);
  api.logout = modules(W.logout);

  // ---- media bytes, moved in chunks (one DevTools call each, never one giant message) ----
  // Outbound: mediaOpen, mediaPut (base64 chunks, in order), sendMedia builds the File from
  // them; inbound: mediaFetch downloads into `held`, mediaRead hands out base64 slices.
  const parts = new Map(), held = new Map();
  const fromB64 = (text) => { const bin = atob(text); const out = new Uint8Array(bin.length); for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i); return out; };
  const toB64 = (bytes) => { let bin = ""; for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); return btoa(bin); };
  api.mediaOpen = (token) => { parts.set(token, []); return true; };
  api.mediaPut = (token, b64) => { const list = parts.get(token); if (!list) throw new Error(`no media upload ${token} open`); list.push(fromB64(b64)); return list.length; };
  api.mediaDrop = (token) => { parts.delete(token); held.delete(token); return true; };
  api.sendMedia = modules(async (chatId, token, meta, id, altId) => {
    const list = parts.get(token);
    if (!list) throw new Error(`no media upload ${token} open`);
    const file = new File(list, meta.filename || "file", { type: meta.mimetype, lastModified: Date.now() });
    parts.delete(token);  // the File holds the bytes now
    if (file.size !== meta.size) throw new Error(`media arrived incomplete: ${file.size} of ${meta.size} bytes`);
    return W.sendMedia(chatId, file, meta.kind, meta.caption || undefined, id, altId);
  });
  api.mediaFetch = modules(async (key, token) => {
    const got = await W.downloadMedia(key);
    if (!got) return null;
    const bytes = new Uint8Array(got.data);
    held.set(token, bytes);
    return { size: bytes.length, mimetype: got.mimetype, filename: got.filename };
  });
  api.mediaRead = (token, offset, length) => {
    const bytes = held.get(token);
    if (!bytes) throw new Error(`no media download ${token} held`);
    return toB64(bytes.subarray(offset, offset + length));
  };
  api.probe = async (connected) => {
    if (api.mode === "dom") {  // no module to ask: only what the page shows
      const main = !!document.querySelector(CFG.mainSelector);
      return main ? { ok: true, dom: true } : { ok: false, why: "WhatsApp Web's main screen is not shown" };
    }
    if (api.mode !== "modules") return { ok: false, why: "WhatsApp Web has not loaded yet" };
    const state = W.state().state;
    if (state !== connected) return { ok: false, why: `WhatsApp Web's state is ${state}` };
    const me = W.me();
    return me ? { ok: true, me } : { ok: false, why: "the account's own number is unknown" };
  };
  api.pair = modules(async (phone, notify, intervalMs, maxRefreshes) => {
    // The code is renewed every intervalMs while the page is unpaired (like wwebjs's
    // codeInterval), at most maxRefreshes times.
    api.pairing = true;
    const code = await W.startPairing(phone, notify);
    clearInterval(api.codeTimer);
    let refreshes = 0;
    api.codeTimer = setInterval(async () => {
      if (!CFG.qrStates.includes(W.state().state)) { clearInterval(api.codeTimer); return; }
      refreshes += 1;
      if (refreshes > maxRefreshes) { clearInterval(api.codeTimer); report({ k: "code_exhausted", refreshes: maxRefreshes }); return; }
      try { report({ k: "code", code: await W.nextPairingCode(phone, notify), refresh: refreshes }); }
      catch (e) { report({ k: "error_soft", message: "pairing code refresh failed: " + e }); }
    }, intervalMs);
    return code;
  });
  api.reloadQr = (timeoutMs) => new Promise((resolve) => {
    // The reload button the page shows when refs run out; it may render after the state
    // change, so wait for it; the command route is the older way.
    const click = () => { const b = document.querySelector(CFG.reloadSelector); if (b) { b.click(); return true; } return false; };
    if (click()) { resolve("button"); return; }
    const obs = new MutationObserver(() => { if (click()) { obs.disconnect(); clearTimeout(timer); resolve("button"); } });
    obs.observe(document.documentElement, { subtree: true, childList: true });
    const timer = setTimeout(() => {
      obs.disconnect();
      try { if (api.mode === "modules" && W.refreshQR()) { resolve("command"); return; } } catch (e) { /* none */ }
      resolve(null);
    }, timeoutMs);
  });
})();
