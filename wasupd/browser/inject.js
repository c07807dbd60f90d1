/* Injected into every document of a session's page (Page.addScriptToEvaluateOnNewDocument).
 * Waits for the page's module loader, listens to its models and reports every event to the
 * daemon through a DevTools binding. All WhatsApp names come from CFG (browser/whatsapp.py).
 * __CONFIG__ is replaced with that configuration before injection. */
(function () {
  const CFG = __CONFIG__;
  if (window.__wasupdInjected) return;
  window.__wasupdInjected = true;
  const report = (obj) => { try { window[CFG.binding](JSON.stringify(obj)); } catch (e) { /* binding gone: page closing */ } };
  const M = (key) => window.require(CFG.modules[key]);

  async function qrPayload(ref) {
    // The 5-part QR string as WhatsApp's own page builds it (reference §1a).
    try {
      const b64 = M("base64").encodeB64;
      const noise = await M("prefsInfo").waNoiseInfo.get();
      const reg = await M("signalStore").waSignalStore.getRegistrationInfo();
      const enc = (k) => (typeof k === "string" ? k : b64(k));
      return [ref, enc(noise.staticKeyPair.pubKey), enc(reg.identityKeyPair.pubKey),
        M("advSignature").getADVSecretKey(), M("regClient").DEVICE_PLATFORM].join(",");
    } catch (e) {
      // DOM fallback: the data-ref attribute holds the full payload (reference §1c).
      const el = document.querySelector(CFG.qrSelector);
      return el ? el.getAttribute("data-ref") : null;
    }
  }

  function serializeMsg(msg) {
    const s = msg.serialize ? msg.serialize() : msg;
    const id = s.id || {};
    return { wa_id: id._serialized, id: id.id, chat_id: typeof id.remote === "string" ? id.remote : String(id.remote),
      from_me: !!id.fromMe, sender: String(s.author || s.from || ""), body: s.body || "", type: s.type, t: s.t, ack: s.ack };
  }

  function attach() {
    const Socket = M("socket").Socket, Conn = M("conn").Conn, Cmd = M("cmd").Cmd;
    const { Msg } = M("collections");
    const me = () => { try { const w = M("meUser").getMaybeMePnUser(); return w ? w._serialized : null; } catch (e) { return null; } };
    const state = () => report({ k: "state", state: Socket.state, synced: !!Socket.hasSynced, me: me() });
    Socket.on("change:state", state);
    Socket.on("change:hasSynced", state);
    Conn.on("change:ref", async (model, ref) => { if (ref) report({ k: "qr", ref, payload: await qrPayload(ref) }); });
    Cmd.on("logout", () => report({ k: "logout", reason: "logout" }));
    Cmd.on("logout_from_bridge", () => report({ k: "logout", reason: "logout_from_bridge" }));
    Cmd.on("offline_progress_update_from_bridge", () => {
      try { report({ k: "progress", percent: M("offline").OfflineMessageHandler.getOfflineDeliveryProgress() }); } catch (e) { /* optional */ }
    });
    Msg.on("add", (msg) => { if (msg.isNewMsg) report({ k: "msg", msg: serializeMsg(msg) }); });
    Msg.on("change:ack", (msg, ack) => { const s = serializeMsg(msg); if (s.from_me) report({ k: "ack", msg: s, ack }); });
    // hasSynced may already be true (fast restore): report the current state after listening.
    state();
    if (Conn.ref && (Socket.state === "UNPAIRED" || Socket.state === "UNPAIRED_IDLE")) {
      qrPayload(Conn.ref).then((p) => report({ k: "qr", ref: Conn.ref, payload: p }));
    }
    report({ k: "attached", version: window[CFG.readyGlobal].VERSION });
  }

  // The loader becomes reachable when the page's bundle has run; no event announces it.
  const started = Date.now();
  const wait = setInterval(() => {
    if (window[CFG.readyGlobal] && window[CFG.readyGlobal].VERSION !== undefined && typeof window.require === "function") {
      clearInterval(wait);
      try { attach(); } catch (e) { report({ k: "error", message: String(e) }); }
    } else if (Date.now() - started > 120000) {
      clearInterval(wait);
      report({ k: "error", message: "WhatsApp Web did not load (no module loader after 120 s)" });
    }
  }, 200);
})();
