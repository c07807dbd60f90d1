/* core.js: events, models, collections and ids, shaped like WhatsApp Web's (§4a, §9).
 * § numbers refer to docs/whatsapp-web.md.
 * Every script file of the page shares one function scope (the server wraps them); CFG is
 * the server's configuration (durations in ms, version, page weight). */

// ---- events: Backbone-style, listeners called as (model, value) for change:* (§2b) ----
class Emitter {
  constructor() { Object.defineProperty(this, "_events", { value: new Map(), writable: true }); }
  on(names, fn, ctx) {
    for (const name of String(names).split(/\s+/).filter(Boolean)) {
      if (!this._events.has(name)) this._events.set(name, []);
      this._events.get(name).push({ fn, ctx });
    }
    return this;
  }
  off(names, fn) {
    const list = names ? String(names).split(/\s+/).filter(Boolean) : Array.from(this._events.keys());
    for (const name of list) {
      if (!fn) { this._events.delete(name); continue; }
      this._events.set(name, (this._events.get(name) || []).filter((l) => l.fn !== fn && l.fn._orig !== fn));
    }
    return this;
  }
  once(names, fn, ctx) {
    const wrapper = (...args) => { this.off(names, wrapper); return fn.apply(ctx, args); };
    wrapper._orig = fn;
    return this.on(names, wrapper, ctx);
  }
  trigger(name, ...args) {
    for (const l of (this._events.get(name) || []).slice()) {
      try { l.fn.apply(l.ctx, args); } catch (e) { console.error(e); } // one bad listener must not stop the others
    }
    return this;
  }
  emit(name, ...args) { return this.trigger(name, ...args); }
}

class Model extends Emitter {
  constructor(attrs) { super(); Object.assign(this, attrs || {}); }
  /** set(name, value) or set({name: value}): fires change:name (model, value), then change (model). */
  set(name, value) {
    const attrs = typeof name === "object" ? name : { [name]: value };
    const changed = Object.keys(attrs).filter((k) => this[k] !== attrs[k]);
    for (const k of changed) this[k] = attrs[k];
    for (const k of changed) this._fire("change:" + k, this, this[k]);
    if (changed.length) this._fire("change", this);
    return this;
  }
  get(name) { return this[name]; }
  _fire(name, ...args) {
    this.trigger(name, ...args);
    if (this.collection) this.collection.trigger(name, ...args);
  }
}
Object.defineProperty(Model.prototype, "collection", { value: null, writable: true });

class Collection extends Emitter {
  constructor(modelClass) { super(); this._byId = new Map(); this.modelClass = modelClass; }
  static keyOf(id) { return id && id._serialized ? id._serialized : String(id); }
  get(id) { return this._byId.get(Collection.keyOf(id)); }
  /** Adds a model (or attributes); an id already present returns the existing model, no event. */
  add(model, opts) {
    const m = model instanceof Model ? model : new this.modelClass(model);
    const key = Collection.keyOf(m.id);
    if (this._byId.has(key)) return this._byId.get(key);
    m.collection = this;
    this._byId.set(key, m);
    if (!(opts && opts.silent)) this.trigger("add", m, this);
    return m;
  }
  remove(model) {
    const key = Collection.keyOf(model && model.id ? model.id : model);
    const m = this._byId.get(key);
    if (m) { this._byId.delete(key); this.trigger("remove", m, this); }
    return m;
  }
  getModelsArray() { return Array.from(this._byId.values()); }
  get models() { return this.getModelsArray(); }
  get length() { return this._byId.size; }
  toArray() { return this.getModelsArray(); }
  forEach(fn) { this.getModelsArray().forEach(fn); }
  filter(fn) { return this.getModelsArray().filter(fn); }
  find(fn) { return this.getModelsArray().find(fn); }
}

// ---- ids (§4a) ----
class Wid {
  constructor(s) {
    const text = String(s);
    const at = text.indexOf("@");
    this.user = at < 0 ? text : text.slice(0, at);
    this.server = at < 0 ? "c.us" : text.slice(at + 1);
    this._serialized = `${this.user}@${this.server}`;
  }
  isUser() { return this.server === "c.us" || this.server === "lid"; }
  isGroup() { return this.server === "g.us"; }
  isLid() { return this.server === "lid"; }
  isStatus() { return this._serialized === "status@broadcast"; }
  isBroadcast() { return this.server === "broadcast"; }
  isNewsletter() { return this.server === "newsletter"; }
  equals(other) { return !!other && String(other) === this._serialized; }
  toString() { return this._serialized; }
  toJSON() { return this._serialized; }
}
const createWid = (s) => {
  if (s instanceof Wid) return s;
  if (s && typeof s === "object" && s._serialized) return new Wid(s._serialized);
  return new Wid(s);
};

const randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));
const hexUpper = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
const toBytes = (data) => (data instanceof ArrayBuffer ? new Uint8Array(data) : Uint8Array.from(data));
const encodeB64 = (data) => btoa(String.fromCharCode(...toBytes(data)));
const decodeB64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer;

/** A message key: {fromMe, remote, id, participant}; serialized "<fromMe>_<remote>_<id>[_<participant>]". */
class MsgKey {
  constructor(opts) {
    const o = opts || {};
    this.fromMe = o.fromMe !== undefined ? !!o.fromMe : o.selfDir === "out";
    this.remote = createWid(o.remote || (this.fromMe ? o.to : o.from) || o.to);
    this.id = String(o.id);
    this.participant = o.participant ? createWid(o.participant) : undefined;
    this._serialized = `${this.fromMe}_${this.remote._serialized}_${this.id}` +
      (this.participant ? `_${this.participant._serialized}` : "");
  }
  toString() { return this._serialized; }
  equals(other) { return !!other && String(other) === this._serialized; }
  /** WhatsApp Web's own ids: "3EB0" + 16 hex digits (20 characters, §4a). */
  static async newId() { return "3EB0" + hexUpper(randomBytes(8)); }
  static fromString(s) {
    const [fromMe, remote, id, participant] = String(s).split("_");
    return new MsgKey({ fromMe: fromMe === "true", remote, id, participant });
  }
}

// Replies from the server, by message type; each script file adds its own.
const handlers = {};
