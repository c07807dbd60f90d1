/* modules.js: window.require(name) and the modules of §9, with the names and shapes real
 * WhatsApp Web has. Unknown names throw `Requiring unknown module "<name>"`, as Meta's module
 * loader does. § numbers refer to docs/whatsapp-web.md. */

const DEVICE_PLATFORM = 1; // §1a: the QR's 5th part (a real one ended in ",1")
const Weight = { resting: [], ballast: [] };

const MeUser = {
  getMaybeMePnUser: () => Conn.wid,
  getMaybeMeLidUser: () => Conn.lid, // undefined on an old-world (not LID-migrated) account
  getMeUser: () => Conn.wid,
  isMeAccount: (wid) => [Conn.wid, Conn.lid].some((w) => !!w && w.equals(createWid(wid))),
};

const noLinkSecret = () => Link.pairingType === "ALT_DEVICE_LINKING";
const findLinks = (s) => (String(s || "").match(/https?:\/\/[^\s]+/g) || [])
  .map((url) => ({ url, href: url, isSuspicious: false, suspiciousCharacters: undefined }));
// Present so that a driver's injection succeeds (whatsapp-web.js 1.34.x sets or patches them);
// calls (video, ciphertext recovery, gated features) are not modelled.
const CallColl = new Collection(Model);
const SyncGating = { isPlaceholderMessageResendEnabled: () => false };

const MODULES = {
  WAWebSocketModel: { Socket },
  WAWebConnModel: { Conn },
  WAWebCmd: { Cmd },
  WAWebStreamModel: { Stream },
  WAWebOfflineHandler: { OfflineMessageHandler: { getOfflineDeliveryProgress: () => UI.progress } },
  WAWebCollections: { Msg: MsgColl, Chat: ChatColl, Contact: new Collection(Model), Call: CallColl,
    WAWebCallCollection: CallColl, GroupMetadata: { update: async () => undefined } },
  WAWebCallCollection: CallColl,
  WAWebSyncGatingUtils: SyncGating,
  WAWebApiContact: ApiContact,
  WAWebLidMigrationUtils: LidMigrationUtils,
  WAWebWidFactory: {
    createWid,
    createUserWid: (user, server) => createWid(`${user}@${server || "c.us"}`),
    asUserWidOrThrow: (wid) => { const w = createWid(wid); if (!w.isUser()) throw new Error("not a user wid"); return w; },
    isWidlike: (v) => !!v && (v instanceof Wid || /@/.test(String(v))),
  },
  WAWebMsgKey: MsgKey,
  WAWebUserPrefsMeUser: MeUser,
  WAWebSendMsgChatAction: { addAndSendMsgToChat },
  WAWebFindChatAction: { findOrCreateLatestChat },
  WAWebQueryExistsJob: { queryWidExists },
  WAWebGetEphemeralFieldsMsgActionsUtils: { getEphemeralFields: () => ({ ephemeralDuration: 0, ephemeralSettingTimestamp: 0 }) },
  WAWebChatGetters: {
    getIsNewsletter: (chat) => createWid(chat.id).isNewsletter(),
    getIsBroadcast: (chat) => createWid(chat.id).isBroadcast(),
    getIsGroup: (chat) => createWid(chat.id).isGroup(),
    getIsUser: (chat) => createWid(chat.id).isUser(),
  },
  WAWebUpdateUnreadChatAction: { sendSeen },
  WALinkify: { findLinks, findLink: (s) => findLinks(s)[0] || null },
  // A link preview is a server fetch: not modelled, so a link is sent without one.
  WAWebLinkPreviewChatAction: { getLinkPreview: async () => null },
  WAWebMiscBrowserUtils: { info: () => ({ os: "Linux", name: "Chrome", version: navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] || "" }) },
  WABase64: { encodeB64, decodeB64 },
  WAWebAltDeviceLinkingApi: AltLinking,
  // The RegistrationUtils of §1a: the QR's key material, asynchronous as in WhatsApp Web.
  WAWebCompanionRegClientUtils: { DEVICE_PLATFORM },
  WAWebUserPrefsInfoStore: { waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: Link.keys.noise, privKey: new ArrayBuffer(32) } }) } },
  WAWebSignalStoreApi: { waSignalStore: { getRegistrationInfo: async () => ({ registrationId: 1,
    identityKeyPair: { pubKey: Link.keys.identity, privKey: new ArrayBuffer(32) } }) } },
  // Synchronous, as in WhatsApp Web: whatsapp-web.js 1.34.x puts its result in the QR as is.
  WAWebUserPrefsMultiDevice: { getADVSecretKey: () => (noLinkSecret() ? null : Link.keys.adv) },
  ...MEDIA_MODULES, // media.js (§4f)
  WAWebAdvSignatureApi: {
    async getADVSecretKey() {
      if (noLinkSecret()) throw new Error("secretKey is null or undefined"); // none while linking by code
      return Link.keys.adv;
    },
  },
};

function requireModule(name) {
  if (!Object.prototype.hasOwnProperty.call(MODULES, name)) throw new Error(`Requiring unknown module "${name}"`);
  return MODULES[name];
}

// ---- page weight and the memory faults: live JS heap, 1 MiB per array of 131072 doubles ----
function holdMiB(list, mib) {
  for (let i = 0; i < mib; i++) list.push(new Array(131072).fill(i + 0.5));
}

const TIMINGS = { syncMs: CFG.syncMs, pairingMs: CFG.pairingMs };
const PAGE_FAULTS = {
  memory: (p) => holdMiB(Weight.ballast, Number(p.mib || 100)),
  slow_idb: (p) => { IDB.delayMs = Number(p.seconds ?? 5) * 1000 * CFG.timeFactor; }, // simulated seconds
  hang_close: () => {
    window.addEventListener("beforeunload", blockUnload);
    window.addEventListener("pagehide", spinForever);
  },
  hang: () => setTimeout(spinForever, 0),
  // hasSynced right after CONNECTED: the race of §2b (a listener attached late never sees it).
  fast_sync: () => { CFG.syncMs = 0; CFG.pairingMs = 0; },
  // A real renderer crash: V8 runs out of heap ("Aw, Snap! Out of memory"); see docs/simulator.md.
  crash: () => setTimeout(() => { const hoard = []; for (;;) hoard.push(new Array(1 << 20).fill(hoard.length + 0.5)); }, 0),
};
function blockUnload(e) { e.preventDefault(); e.returnValue = "Changes you made may not be saved."; }
function spinForever() { for (;;) { /* the renderer never gets its thread back */ } }

// configure(time_factor): the durations the page times itself, from now on.
handlers.timing = (m) => {
  Object.assign(CFG, m.config);
  Object.assign(TIMINGS, { syncMs: m.config.syncMs, pairingMs: m.config.pairingMs });
};
handlers.fault = (m) => { if (PAGE_FAULTS[m.kind]) PAGE_FAULTS[m.kind](m.params || {}); };
handlers.clear_fault = (m) => {
  if (m.kind === "memory") Weight.ballast = [];
  if (m.kind === "slow_idb") IDB.delayMs = 0;
  if (m.kind === "fast_sync") Object.assign(CFG, TIMINGS);
  if (m.kind === "hang_close") {
    window.removeEventListener("beforeunload", blockUnload);
    window.removeEventListener("pagehide", spinForever);
  }
};
