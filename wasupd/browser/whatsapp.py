"""Everything WhatsApp-specific the driver knows: modules, their members and events, states,
selectors, URL markers, cadences.

When WhatsApp Web changes, this is the one file to edit. The page side is `SURFACE_JS`: one small
JavaScript accessor per WhatsApp concept (read the state, listen to new refs, send a message...).
inject.js (reporting, the DOM fallback, timers) and driver.py call only those accessors and the
names below, so neither holds a WhatsApp name of its own.
Sources, noted per group: whatsapp-web.js v1.34.6 (github.com/pedroslopez/whatsapp-web.js; `src/Client.js`,
`src/util/Constants.js`, `src/util/Injected/Utils.js`, `src/util/Injected/AuthStore/AuthStore.js`,
`index.d.ts`), wa-js (github.com/wppconnect-team/wa-js, `src/conn/`) and Baileys
(github.com/WhiskeySockets/Baileys); docs/driver.md says what each fact is used for.
"""

from __future__ import annotations

import json
from typing import Any

# Modules are reached with window.require(name) (Meta's loader, which throws for an unknown name)
# once window.Debug.VERSION exists: whatsapp-web.js `src/Client.js` (inject) and
# `src/util/Injected/AuthStore/AuthStore.js` (the auth modules).
MODULES = {
    "socket": "WAWebSocketModel",  # .Socket: state, hasSynced, change:* (model, value), logout()
    "conn": "WAWebConnModel",  # .Conn: ref + change:ref, wid
    "cmd": "WAWebCmd",  # .Cmd: logout, logout_from_bridge, offline progress, refreshQR()
    "collections": "WAWebCollections",  # .Msg, .Chat: get(id), on('add' | 'change:ack')
    "widFactory": "WAWebWidFactory",  # createWid(str)
    "msgKey": "WAWebMsgKey",  # class + static newId()
    "meUser": "WAWebUserPrefsMeUser",  # getMaybeMePnUser()
    "sendMsg": "WAWebSendMsgChatAction",  # addAndSendMsgToChat -> [msgPromise, resultPromise]
    "findChat": "WAWebFindChatAction",  # findOrCreateLatestChat(wid) -> {chat}
    "queryExists": "WAWebQueryExistsJob",  # queryWidExists(wid) -> {wid} | null (server trip)
    "ephemeral": "WAWebGetEphemeralFieldsMsgActionsUtils",  # getEphemeralFields(chat)
    "altLinking": "WAWebAltDeviceLinkingApi",  # pairing by phone number (Client.js requestPairingCode)
    "base64": "WABase64",  # encodeB64
    "regClient": "WAWebCompanionRegClientUtils",  # DEVICE_PLATFORM
    "advSignature": "WAWebAdvSignatureApi",  # getADVSecretKey()
    "prefsInfo": "WAWebUserPrefsInfoStore",  # waNoiseInfo.get()
    "signalStore": "WAWebSignalStoreApi",  # waSignalStore.getRegistrationInfo()
    "offline": "WAWebOfflineHandler",  # OfflineMessageHandler.getOfflineDeliveryProgress()
    # The LID <-> phone number cache (wwebjs `Store.LidUtils`): getPhoneNumber(lid),
    # getCurrentLid(pn). Required lazily: a page from before LIDs may not have it.
    "apiContact": "WAWebApiContact",
    # The media path (docs/driver.md "Media"): whatsapp-web.js `src/util/Injected/Utils.js`
    # processMediaData (send) and `src/structures/Message.js` downloadMedia (receive).
    "opaqueData": "WAWebMediaOpaqueData",  # createFromData(file, mimetype) -> OpaqueData
    "prepRawMedia": "WAWebPrepRawMedia",  # prepRawMedia(opaque, params).waitForPrep() -> MediaData
    "mediaStorage": "WAWebMediaStorage",  # getOrCreateMediaObject(filehash)
    "mmsTypes": "WAWebMmsMediaTypes",  # msgToMediaType({type, isGif, isNewsletter}), castToV4
    "mediaDataUtils": "WAWebMediaDataUtils",  # shouldUseMediaCache(type)
    "blobCache": "WAWebMediaInMemoryBlobCache",  # InMemoryMediaBlobCache.put(filehash, blob)
    "mmsUpload": "WAWebMediaMmsV4Upload",  # uploadMedia({mimetype, mediaObject, mediaType})
    "downloadManager": "WAWebDownloadManager",  # downloadManager.downloadAndMaybeDecrypt(...)
}
# Without these the module route is useless and the DOM fallback takes over.
CORE_MODULES = ("socket", "conn", "cmd", "collections")
# How long the page may take before its module loader is reachable (wwebjs waits 30 s by
# default); after that the DOM fallback reports what the page shows.
MODULES_TIMEOUT_S = 30.0

# Socket.state values: whatsapp-web.js `src/util/Constants.js` `WAState` (wa-js `SOCKET_STATE`).
STATES_WAITING = ("OPENING", "UNLAUNCHED")  # the session stays `starting`
STATE_PAIRING = "PAIRING"  # a phone scanned: `syncing`
STATE_UNPAIRED = "UNPAIRED"
STATE_IDLE = "UNPAIRED_IDLE"  # the refs ran out; the reload button is shown
STATES_QR = (STATE_UNPAIRED, STATE_IDLE)
STATE_CONNECTED = "CONNECTED"
# Refused for good: the session fails with the state as its reason.
STATES_FATAL = ("TOS_BLOCK", "SMB_TOS_BLOCK", "DEPRECATED_VERSION", "PROXYBLOCK")
# Another WhatsApp Web took over (CONFLICT) or the connection timed out (TIMEOUT): `degraded`.
STATES_DEGRADED = ("CONFLICT", "TIMEOUT")
# Why a state is fatal or degraded, in words a sysadmin can act on.
STATE_HELP = {
    "TOS_BLOCK": "the number is banned (terms of service); contact WhatsApp support",
    "SMB_TOS_BLOCK": "the business number is banned (terms of service)",
    "DEPRECATED_VERSION": "WhatsApp refuses this WhatsApp Web version; update or unpin it",
    "PROXYBLOCK": "WhatsApp blocks the proxy this session uses; change [browser] proxy",
    "CONFLICT": "WhatsApp Web was opened elsewhere for this account",
    "TIMEOUT": "the connection to WhatsApp timed out; the page reconnects by itself",
}

# The DOM, for the QR fallback, the reload button and the main UI: whatsapp-web.js `src/Client.js`
# and `src/util/Constants.js` before its internal-modules rewrite (PR #2816, parent commit
# 24b11b7d), and wppconnect `src/api/helpers/scrape-img-qr.ts`.
SELECTOR_QR_CONTAINER = "div[data-ref]"
QR_ATTRIBUTE = "data-ref"  # holds the full QR payload
SELECTOR_QR_RELOAD = "div[data-ref] button"  # older markup: div[data-ref] > span > button
SELECTOR_MAIN_UI = "[data-icon='search'], [data-icon='chat']"

# A logout navigates to a URL carrying this marker: whatsapp-web.js `src/Client.js` (framenavigated).
LOGOUT_URL_MARKER = "post_logout=1"

# Server cadence of QR refs (seconds): the first lives 60 s, each later one 20 s (Baileys
# `src/Socket/socket.ts`, the pair-device refs).
FIRST_REF_SECONDS = 60.0
NEXT_REF_SECONDS = 20.0

# A pairing code is refreshed at most this many times (wa-js `linkDeviceCodeLifecycle.ts`,
# MAX_AUTO_REFRESHES); its alphabet is Baileys' `bytesToCrockford` (`src/Utils/generics.ts`).
PAIRING_CODE_MAX_REFRESHES = 5
PAIRING_CODE_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"  # Crockford without 0, I, O, U
PAIRING_CODE_LENGTH = 8

# Chat ids (`<digits>@c.us`, `<digits>@lid`, `<id>@g.us`) are parsed in wasupd.addressing; the
# serialized message key is `<fromMe>_<remote>_<id>` (whatsapp-web.js `index.d.ts`).
# Chat lookup throws this for a number whose LID the page does not know (§4e).
NO_LID_ERROR = "No LID for user"


def message_key(chat_id: str, message_id: str, *, from_me: bool = True) -> str:
    """The serialized key `Msg.get()` takes (`<fromMe>_<remote>_<id>`)."""
    return f"{'true' if from_me else 'false'}_{chat_id}_{message_id}"


# Media kinds: ours (what `--as` takes) -> WhatsApp Web's Msg.type, and the prep flags
# processMediaData passes for a forced kind (sendMediaAsDocument, sendAudioAsVoice,
# sendMediaAsSticker: asDocument, isPtt, asSticker).
MEDIA_TYPES = {
    "document": "document",
    "image": "image",
    "video": "video",
    "audio": "audio",
    "voice": "ptt",
    "sticker": "sticker",
}
MEDIA_KINDS = {wa_type: kind for kind, wa_type in MEDIA_TYPES.items()}
# WhatsApp's size limits per kind, checked before a message is queued. Images, video, audio
# and voice notes: 16 MB (WhatsApp Help Center, "About sending media"; WhatsApp Web refuses a
# larger photo or video as media and offers it as a document); documents: 100 MB from
# WhatsApp Web (the phones take 2 GB); stickers: 500 KB (an animated WebP; static ones are
# ~100 KB), WebP only. MiB are used: the clients count in binary megabytes.
MEDIA_LIMITS = {
    "document": 100 << 20,
    "image": 16 << 20,
    "video": 16 << 20,
    "audio": 16 << 20,
    "voice": 16 << 20,
    "sticker": 500 << 10,
}
STICKER_MIME = "image/webp"
# The MIME types WhatsApp takes for each media kind (WhatsApp Business Platform, Cloud API
# "Supported media types"; WebP images as WhatsApp Web sends them). A document may be anything.
MEDIA_MIMES = {
    "image": ("image/jpeg", "image/png", "image/webp"),
    "video": ("video/mp4", "video/3gpp"),
    "audio": ("audio/aac", "audio/mp4", "audio/mpeg", "audio/amr", "audio/ogg"),
    "voice": ("audio/ogg", "audio/aac", "audio/mp4", "audio/mpeg", "audio/amr"),
    "sticker": (STICKER_MIME,),
}
# The kind a file gets from its content when the sender does not choose one.
AUTO_KINDS = {
    "image/jpeg": "image",
    "image/png": "image",
    "video/mp4": "video",
    "video/3gpp": "video",
    **{mime: "audio" for mime in MEDIA_MIMES["audio"]},
}
# Media bytes move through the DevTools pipe in chunks of this size (base64 in one
# Runtime.callFunctionOn each): a 64 MiB file is 128 messages of ~700 KB, not one of 90 MB.
MEDIA_CHUNK = 512 << 10


# The only SendMsgResult that means sent (wa-js `src/whatsapp/enums/`, SendMsgResult).
SEND_OK = "OK"

# The page surface: `W.<name>(...)` in inject.js. `R(key)` requires MODULES[key]. The QR string,
# the send path and the listeners follow whatsapp-web.js `src/Client.js` and
# `src/util/Injected/Utils.js` (`window.WWebJS.sendMessage`).
# Events are Backbone-style `(model, value)`; keys and wids are serialized with `_serialized`.
SURFACE_JS = r"""
const ser = (w) => (w === undefined || w === null ? null : String(w._serialized || w));
const wid = (id) => R("widFactory").createWid(id);
const isLidId = (id) => String(id || "").endsWith("@lid");
const isPnId = (id) => String(id || "").endsWith("@c.us");
// The page's LID <-> number cache: no network (wwebjs enforceLidAndPnRetrieval's lookups).
// Required lazily and optional: a page from before LIDs knows none.
const lidApi = () => { try { return R("apiContact"); } catch (e) { return null; } };
const peerOf = (id) => {
  const s = ser(id);
  const api = lidApi();
  const look = (fn) => { try { return api ? ser(api[fn](wid(s))) : null; } catch (e) { return null; } };
  if (isLidId(s)) return { pn: look("getPhoneNumber"), lid: s };
  if (isPnId(s)) return { pn: s, lid: look("getCurrentLid") };
  return { pn: null, lid: null };  // a group, or nothing
};
const serialize = (msg) => {
  const s = msg.serialize ? msg.serialize() : msg;
  const id = s.id || {};
  const sender = ser(s.author || s.from) || "";
  const who = peerOf(sender), chat = peerOf(id.remote);
  return { wa_id: ser(id), id: id.id, chat_id: ser(id.remote), from_me: !!id.fromMe, sender,
    sender_pn: who.pn, sender_lid: who.lid, chat_pn: chat.pn, chat_lid: chat.lid,
    push_name: s.notifyName || "", body: (s.directPath ? s.caption : s.body) || "", type: s.type, t: s.t,
    ...mediaInfo(s) };
};
// A media message (wwebjs Message: hasMedia = Boolean(directPath), body = caption).
const mediaInfo = (s) => (s.directPath ? { has_media: true, mimetype: s.mimetype || null,
  size: s.size === undefined ? null : Number(s.size), filename: s.filename || null,
  caption: s.caption || "", filehash: s.filehash || null } : { has_media: false });
const findChat = async (chatId) => R("collections").Chat.get(chatId)
  || ((await R("findChat").findOrCreateLatestChat(wid(chatId))) || {}).chat;
const meLid = () => { try { return R("meUser").getMaybeMeLidUser() || null; } catch (e) { return null; } };
// The send shared by text and media (Utils.js sendMessage): the chat, `from` and the key, the
// message with `fields()` spread in, addAndSendMsgToChat's two promises.
const sendBuilt = async (chatId, id, altId, fields) => {
  let chat;
  try { chat = await findChat(chatId); } catch (e) {
    if (!altId || !String(e && e.message).includes(NO_LID)) throw e;
    chat = await findChat(altId);
  }
  if (!chat) return { error: `no chat with ${chatId}` };
  // `from` is the own LID in @lid chats and LID-mode groups, the number elsewhere (§4b).
  const chatSer = ser(chat.id);
  const lidChat = chatSer.endsWith("@g.us") ? !!(chat.groupMetadata && chat.groupMetadata.isLidAddressingMode) : isLidId(chatSer);
  const from = (lidChat && meLid()) || R("meUser").getMaybeMePnUser();
  const MsgKey = R("msgKey");
  const key = new MsgKey({ from, to: chat.id, id, participant: undefined, selfDir: "out" });
  const msg = { id: key, ack: 0, from, to: chat.id, local: true, self: "out",
    t: Math.floor(Date.now() / 1000), isNewMsg: true, type: "chat", ...R("ephemeral").getEphemeralFields(chat), ...fields() };
  const [msgPromise, resultPromise] = R("sendMsg").addAndSendMsgToChat(chat, msg);
  await msgPromise;
  const result = await resultPromise;
  const code = typeof result === "string" ? result : (result && (result.messageSendResult || result.status)) || String(result);
  return { key: ser(key), result: code, chat_id: chatSer };
};
// Utils.js processMediaData, step by step: OpaqueData, prepRawMedia, the MediaObject by
// filehash, the in-memory cache, uploadMedia, the media entry's fields on the MediaData.
const prepareMedia = async (file, kind) => {
  const OpaqueData = R("opaqueData");
  const opaque = await OpaqueData.createFromData(file, file.type);
  const params = { asSticker: kind === "sticker", asGif: false, isPtt: kind === "voice", asDocument: kind === "document" };
  const mediaData = await R("prepRawMedia").prepRawMedia(opaque, params).waitForPrep();
  const mediaObject = R("mediaStorage").getOrCreateMediaObject(mediaData.filehash);
  const types = R("mmsTypes");
  const mediaType = types.msgToMediaType({ type: mediaData.type, isGif: mediaData.isGif, isNewsletter: false });
  if (!mediaData.filehash) throw new Error("media-fault: sendToChat filehash undefined");
  if (!(mediaData.mediaBlob instanceof OpaqueData)) mediaData.mediaBlob = await OpaqueData.createFromData(mediaData.mediaBlob, mediaData.mediaBlob.type);
  mediaData.renderableUrl = mediaData.mediaBlob.url();
  mediaObject.consolidate(mediaData.toJSON());
  mediaData.mediaBlob.autorelease();
  if (R("mediaDataUtils").shouldUseMediaCache(types.castToV4(mediaObject.type)) && mediaData.mediaBlob instanceof OpaqueData) {
    R("blobCache").InMemoryMediaBlobCache.put(mediaObject.filehash, mediaData.mediaBlob.formData());
  }
  const uploaded = await R("mmsUpload").uploadMedia({ mimetype: mediaData.mimetype, mediaObject, mediaType });
  const e = uploaded.mediaEntry;
  if (!e) throw new Error("upload failed: media entry was not created");
  mediaData.set({ clientUrl: e.mmsUrl, deprecatedMms3Url: e.deprecatedMms3Url, directPath: e.directPath, mediaKey: e.mediaKey,
    mediaKeyTimestamp: e.mediaKeyTimestamp, filehash: mediaObject.filehash, encFilehash: e.encFilehash, uploadhash: e.uploadHash,
    size: mediaObject.size, streamingSidecar: e.sidecar, firstFrameSidecar: e.firstFrameSidecar, mediaHandle: null });
  return mediaData;
};
return {
  ready: () => !!(window.Debug && window.Debug.VERSION !== undefined && typeof window.require === "function"),
  version: () => window.Debug.VERSION,
  require: R,
  state: () => { const S = R("socket").Socket; return { state: S.state, synced: !!S.hasSynced }; },
  onState: (fn) => { const S = R("socket").Socket; S.on("change:state", fn); S.on("change:hasSynced", fn); },
  me: () => {
    try { const w = R("meUser").getMaybeMePnUser(); if (w) return ser(w); } catch (e) { /* not linked */ }
    try { return ser(R("conn").Conn.wid); } catch (e) { return null; }
  },
  ref: () => R("conn").Conn.ref,
  onRef: (fn) => R("conn").Conn.on("change:ref", (model, ref) => fn(ref)),
  qrPayload: async (ref) => {  // ref, noise key, identity key, ADV secret, platform (as Client.js)
    const b64 = R("base64").encodeB64;
    const enc = (k) => (typeof k === "string" ? k : b64(k));
    const noise = await R("prefsInfo").waNoiseInfo.get();
    const reg = await R("signalStore").waSignalStore.getRegistrationInfo();
    const adv = await R("advSignature").getADVSecretKey();  // a promise in some builds
    return [ref, enc(noise.staticKeyPair.pubKey), enc(reg.identityKeyPair.pubKey), enc(adv),
      R("regClient").DEVICE_PLATFORM].join(",");
  },
  refreshQR: () => { const C = R("cmd").Cmd; if (typeof C.refreshQR !== "function") return false; C.refreshQR(); return true; },
  onLogout: (fn) => { const C = R("cmd").Cmd; C.on("logout", () => fn("logout")); C.on("logout_from_bridge", () => fn("logout_from_bridge")); },
  onProgress: (fn) => R("cmd").Cmd.on("offline_progress_update_from_bridge", () => {
    let p = null; try { p = R("offline").OfflineMessageHandler.getOfflineDeliveryProgress(); } catch (e) { /* optional */ }
    fn(p);
  }),
  // New messages from the server (not our own local sends); ciphertext waits for its type
  // (as Client.js attachEventListeners).
  onMessage: (fn) => R("collections").Msg.on("add", (msg) => {
    if (!msg.isNewMsg || msg.local) return;
    if (msg.type === "ciphertext" && msg.once) { msg.once("change:type", () => fn(serialize(msg))); return; }
    fn(serialize(msg));
  }),
  onAck: (fn) => R("collections").Msg.on("change:ack", (msg, ack) => fn(serialize(msg), ack)),
  newId: async () => String(await R("msgKey").newId()),
  exists: async (chatId) => {
    const r = await R("queryExists").queryWidExists(wid(chatId));
    return r && r.wid ? ser(r.wid) : null;
  },
  // A user before a send, as wwebjs's enforceLidAndPnRetrieval: the cache, then the server
  // (whose answer teaches the page the mapping), then the cache again. A chat the page has
  // needs no round trip. {found, pn, lid}; found false: not on WhatsApp.
  resolveUser: async (chatId) => {
    const known = peerOf(chatId);
    if ((isLidId(chatId) ? known.pn : known.lid) || R("collections").Chat.get(chatId)) return { found: true, ...known };
    const r = await R("queryExists").queryWidExists(wid(chatId));
    if (!r || !r.wid) return { found: false, pn: null, lid: null, state: R("socket").Socket.state };
    const now = peerOf(chatId);
    return { found: true, pn: now.pn, lid: now.lid || (isPnId(chatId) && r.lid ? ser(r.lid) : null) };
  },
  hasChat: (chatId) => !!R("collections").Chat.get(chatId),
  msgExists: (keys) => keys.some((key) => !!R("collections").Msg.get(key)),
  // As Utils.js window.WWebJS.sendMessage builds it. `altId`: the same person's other id, for
  // a page that throws "No LID for user" although the LID is known to us.
  send: async (chatId, body, id, altId) => sendBuilt(chatId, id, altId, () => ({ body })),
  // A file (a File of the bytes) as Utils.js processMediaData prepares and uploads it, then
  // sent as sendMessage sends media (the caption beside, the prepared fields spread in).
  sendMedia: async (chatId, file, kind, caption, id, altId) => {
    const media = await prepareMedia(file, kind);
    return sendBuilt(chatId, id, altId, () => ({ body: media.preview, ...media, ...media.toJSON(), caption }));
  },
  // As Message.js downloadMedia: resolve the media, then download it by its direct path.
  // {data: ArrayBuffer, mimetype, filename, size}, or null when it cannot be had (expired).
  downloadMedia: async (key) => {
    const C = R("collections").Msg;
    const msg = C.get(key) || (((await C.getMessagesById([key])) || {}).messages || [])[0];
    if (!msg || !msg.mediaData || msg.mediaData.mediaStage === "REUPLOADING") return null;
    if (msg.mediaData.mediaStage !== "RESOLVED") await msg.downloadMedia({ downloadEvenIfExpensive: true, rmrReason: 1 });
    const stage = String(msg.mediaData.mediaStage);
    if (stage.includes("ERROR") || stage === "FETCHING") return null;
    const qpl = { addAnnotations() { return this; }, addPoint() { return this; } };
    try {
      const data = await R("downloadManager").downloadManager.downloadAndMaybeDecrypt({ directPath: msg.directPath,
        encFilehash: msg.encFilehash, filehash: msg.filehash, mediaKey: msg.mediaKey, mediaKeyTimestamp: msg.mediaKeyTimestamp,
        type: msg.type, signal: new AbortController().signal, downloadQpl: qpl });
      return { data, mimetype: msg.mimetype, filename: msg.filename || null, size: msg.size };
    } catch (e) {
      if (e && e.status === 404) return null;
      throw e;
    }
  },
  startPairing: async (phone, notify) => {  // as Client.js requestPairingCode
    const L = R("altLinking");
    L.setPairingType("ALT_DEVICE_LINKING");
    await L.initializeAltDeviceLinking();
    return String(await L.startAltLinkingFlow(phone, notify));
  },
  nextPairingCode: async (phone, notify) => String(await R("altLinking").startAltLinkingFlow(phone, notify)),
  logout: () => { R("socket").Socket.logout(); return true; },
};
"""


def surface_js() -> str:
    """`SURFACE_JS` as an expression: the accessor object, with `R` bound to `MODULES`."""
    return (
        f"(() => {{ const MODULES = {json.dumps(MODULES)};"
        f" const NO_LID = {json.dumps(NO_LID_ERROR)};"
        " const R = (key) => window.require(MODULES[key]);"
        f"{SURFACE_JS}}})()"
    )


# The DevTools binding the injected script reports through.
BINDING = "__wasupdReport"


def inject_config() -> str:
    """The JSON configuration handed to inject.js (the names it needs besides the surface)."""
    cfg: dict[str, Any] = {
        "binding": BINDING,
        "coreModules": list(CORE_MODULES),
        "modulesTimeoutMs": MODULES_TIMEOUT_S * 1000,
        "qrStates": list(STATES_QR),
        "qrSelector": SELECTOR_QR_CONTAINER,
        "qrAttribute": QR_ATTRIBUTE,
        "reloadSelector": SELECTOR_QR_RELOAD,
        "mainSelector": SELECTOR_MAIN_UI,
    }
    return json.dumps(cfg)
