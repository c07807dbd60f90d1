/* msg.js: messages and chats (§4): Msg add with isNewMsg for new messages, change:ack
 * (msg, ack) for 0 -> 1 -> 2 -> 3, the two promises of addAndSendMsgToChat, and outgoing
 * messages kept in IndexedDB so a restart still finds (and re-sends) them.
 * § numbers refer to docs/whatsapp-web.md. */

class Msg extends Model {
  serialize() {
    const id = { fromMe: this.id.fromMe, remote: this.id.remote._serialized, id: this.id.id, _serialized: this.id._serialized };
    if (this.id.participant) id.participant = this.id.participant._serialized;
    return { id, ack: this.ack, body: this.body, type: this.type, t: this.t, from: String(this.from), to: String(this.to),
      author: this.author ? String(this.author) : undefined, notifyName: this.notifyName || "",
      isNewMsg: !!this.isNewMsg, self: this.self, local: !!this.local,
      star: false, broadcast: false, isForwarded: false, forwardingScore: 0, hasReaction: false, quotedMsg: undefined,
      mentionedJidList: [], directPath: undefined, isStatusV3: false, links: [], ...(mediaOf(this) || {}) };
  }
  /** downloadMedia(opts): resolve the media (the real one fetches when it is not yet on the device). */
  async downloadMedia() { if (this.mediaData) this.mediaData.set("mediaStage", "RESOLVED"); }
}
class Chat extends Model {
  serialize() {
    return { id: this.id, name: this.name, isGroup: this.id.isGroup(), isReadOnly: false, unreadCount: this.unreadCount || 0,
      timestamp: this.t || 0, t: this.t || 0, archive: false, pinned: false, isMuted: false };
  }
}
/** A group's metadata (§4e): participants by LID in LID addressing mode, else by number. */
class GroupMetadata extends Model {
  serialize() {
    return { id: this.id, subject: this.subject, isLidAddressingMode: !!this.isLidAddressingMode,
      participants: this.participants.map((p) => ({ id: p.id, isAdmin: false, isSuperAdmin: false })), announce: false };
  }
}
const MsgColl = new Collection(Msg);
const ChatColl = new Collection(Chat);
MsgColl.getMessagesById = async (ids) => ({ messages: ids.map((i) => MsgColl.get(i)).filter(Boolean) });
const byId = new Map(); // message id -> model (acks name the id, not the key)
const sendResults = new Map(); // message id -> resolve of addAndSendMsgToChat's second promise

function ensureChat(wid, name) {
  const id = createWid(wid);
  const title = () => { const pn = pnOf(id); return pn ? `+${pn.user}` : id.user; };
  return ChatColl.get(id) || ChatColl.add(new Chat({ id, name: name || (id.isGroup() ? "" : title()), t: 0, unreadCount: 0 }));
}
/** A group chat from the server: its metadata and what the page learns about its members. */
function groupChat(g) {
  learnLids(g.pairs);
  const chat = ensureChat(g.id, g.name);
  chat.groupMetadata = new GroupMetadata({ id: chat.id, subject: g.name, isLidAddressingMode: !!g.lidMode,
    participants: (g.participants || []).map((p) => ({ id: createWid(p) })) });
  return chat;
}
function loadChats(chats) { for (const c of chats) groupChat(c); }
handlers.chat = (m) => { groupChat(m); refreshMain(); };

/** A message from the server (history, offline or new) as a Msg model in the collection. */
function addMessage(m, isNew) {
  const key = new MsgKey({ fromMe: m.fromMe, remote: m.remote, id: m.id, participant: m.participant });
  const existing = MsgColl.get(key);
  if (existing) return existing;
  learnLids(m.pairs); // a message from a migrated contact says its number, unless hidden (§4e)
  const chat = ensureChat(key.remote);
  const msg = new Msg({ id: key, ack: m.ack, body: m.body, type: m.type || "chat", t: m.t, from: createWid(m.from),
    to: createWid(m.to), author: m.author ? createWid(m.author) : undefined, notifyName: m.notifyName || "", isNewMsg: isNew,
    self: m.fromMe ? "out" : "in", local: false, ...(m.media || {}),
    mediaData: m.media ? new MediaData({ type: m.type, mediaStage: "INIT" }) : undefined });
  byId.set(key.id, msg);
  chat.set({ t: Math.max(chat.t || 0, m.t || 0), lastMsg: msg });
  if (isNew && !m.fromMe) chat.set("unreadCount", (chat.unreadCount || 0) + 1);
  MsgColl.add(msg);
  refreshMain();
  return msg;
}

function receiveMessage(m) {
  addMessage(m, true);
  if (!m.fromMe) toServer({ t: "receipt", ids: [m.id] }); // so it is not delivered again as offline
}
handlers.msg = (m) => receiveMessage(m.msg);

handlers.ack = (m) => {
  const msg = byId.get(m.id);
  if (msg && (m.ack > msg.ack || m.ack < 0)) {
    msg.set("ack", m.ack);
    refreshMain();
    if (msg.id.fromMe) idbPut("message", msg.id.id, outgoingRecord(msg)).catch(() => {});
  }
  const done = sendResults.get(m.id);
  if (done && m.result) { sendResults.delete(m.id); done(m.result); }
};

handlers.exists = (m) => {
  const q = Net.queries.get(m.qid);
  if (!q) return;
  Net.queries.delete(m.qid);
  if (m.error) { q.reject(new Error(m.error)); return; } // no answer at all: not a "no such user"
  if (m.wid && m.lid) learnLids([[m.lid, m.pn]]); // the answer teaches the mapping (§4e)
  q.resolve(m.wid ? m : null);
};

const outgoingRecord = (msg) => ({ id: msg.id.id, key: msg.id._serialized, remote: msg.id.remote._serialized,
  participant: msg.id.participant ? msg.id.participant._serialized : null, to: String(msg.to), from: String(msg.from),
  body: msg.body, type: msg.type, t: msg.t, ack: msg.ack, media: mediaOf(msg) });

/** addAndSendMsgToChat(chat, msg) -> [Promise<Msg>, Promise<'OK'|'ERROR_UNKNOWN'>] (§4b). */
function addAndSendMsgToChat(chat, data) {
  const key = data.id instanceof MsgKey ? data.id : new MsgKey(data.id);
  const fresh = new Msg({ ...data, id: key, ack: 0, isNewMsg: true, local: true, self: "out",
    t: data.t || Math.floor(Date.now() / 1000), type: data.type || "chat",
    from: createWid(data.from || Conn.wid), to: createWid(data.to || chat.id) });
  const msg = MsgColl.add(fresh); // an id already here returns that model: no second add event
  if (msg === fresh) {
    byId.set(key.id, msg);
    chat.set({ t: msg.t, lastMsg: msg });
    refreshMain();
  }
  const stored = idbPut("message", key.id, outgoingRecord(msg)).catch(() => {});
  const result = new Promise((resolve) => sendResults.set(key.id, resolve));
  stored.then(() => toServer({ t: "send", id: key.id, to: chat.id._serialized, body: msg.body, type: msg.type, media: mediaOf(msg) }));
  return [stored.then(() => msg), result];
}

/** After a restart or reconnect: re-send what this device had not got past the server. */
async function resendPending(history) {
  const known = new Set(history.filter((h) => h.fromMe).map((h) => h.id));
  const kept = await idbAll("message").catch(() => []);
  for (const rec of kept) {
    if (known.has(rec.id) || rec.ack !== 0) continue;
    if (!MsgColl.get(rec.key)) {
      const msg = new Msg({ id: MsgKey.fromString(rec.key), ack: 0, body: rec.body, type: rec.type, t: rec.t,
        from: createWid(rec.from), to: createWid(rec.to), isNewMsg: false, self: "out", local: true, ...(rec.media || {}) });
      byId.set(rec.id, msg);
      MsgColl.add(msg);
    }
  }
  for (const msg of MsgColl.getModelsArray()) {
    if (msg.id.fromMe && msg.ack === 0 && !known.has(msg.id.id)) {
      toServer({ t: "send", id: msg.id.id, to: msg.id.remote._serialized, body: msg.body, type: msg.type, media: mediaOf(msg), retry: true });
    }
  }
}

/** The chat WhatsApp Web picks for `wid` (§4e): on a migrated page a number's chat is its LID
 * chat, and a number whose LID the page has not learnt throws "No LID for user" without asking
 * the server (resolve it first: queryWidExists). */
async function findOrCreateLatestChat(wid) {
  const asked = createWid(wid);
  const id = asked.isGroup() ? asked : chatIdFor(asked);
  const chat = id && ChatColl.get(id);
  if (chat) return { chat, created: false };
  // Real WhatsApp Web (2.3000.x) throws this for a number it cannot resolve (not on WhatsApp).
  if (!id || id.isGroup() || !(await query({ t: "exists", wid: id._serialized }))) throw new Error("No LID for user");
  const created = ensureChat(id);
  refreshMain();
  return { chat: created, created: true };
}

/** A server round trip: {wid, lid?} or null ("not on WhatsApp"); the page learns the LID. */
async function queryWidExists(wid) {
  const found = await query({ t: "exists", wid: String(createWid(wid)) });
  if (!found) return null;
  const lid = found.lid && Lids.enabled ? createWid(found.lid) : undefined;
  return { wid: createWid(found.wid), lid, biz: false };
}

async function sendSeen(arg) {
  const chat = arg && arg.chat ? arg.chat : arg;
  if (!chat || !chat.id) return false;
  chat.set("unreadCount", 0);
  return toServer({ t: "seen", chat: chat.id._serialized });
}
