/* store.js: what the page keeps in the browser profile (IndexedDB, docs/whatsapp-web.md
 * §5b): the link credentials and key material ("user" store) and this device's outgoing
 * messages ("message" store), so a restart restores the link without a QR and re-sends what
 * was still pending. The slow_idb fault delays every write, as a slow disk flush would. */

const IDB = { name: "wawc", version: 1, delayMs: 0, db: null };

function idbOpen() {
  if (IDB.db) return Promise.resolve(IDB.db);
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(IDB.name, IDB.version);
    req.onupgradeneeded = () => {
      req.result.createObjectStore("user");
      req.result.createObjectStore("message");
    };
    req.onsuccess = () => { IDB.db = req.result; resolve(IDB.db); };
    req.onerror = () => reject(req.error);
  });
}

function idbRequest(store, mode, op) {
  return idbOpen().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const req = op(tx.objectStore(store));
    tx.oncomplete = () => resolve(req ? req.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  }));
}

const idbGet = (store, key) => idbRequest(store, "readonly", (s) => s.get(key));
const idbAll = (store) => idbRequest(store, "readonly", (s) => s.getAll());

async function idbWrite(store, op) {
  if (IDB.delayMs > 0) await new Promise((r) => setTimeout(r, IDB.delayMs));
  return idbRequest(store, "readwrite", op);
}
const idbPut = (store, key, value) => idbWrite(store, (s) => s.put(value, key));
const idbDelete = (store, key) => idbWrite(store, (s) => s.delete(key));
const idbClear = (store) => idbWrite(store, (s) => s.clear());

/** The registration keys of this profile, made once and kept until a logout wipes them. */
async function loadKeys() {
  const kept = await idbGet("user", "keys");
  if (kept) return kept;
  const keys = { noise: randomBytes(32).buffer, identity: randomBytes(32).buffer, adv: encodeB64(randomBytes(32)) };
  await idbRequest("user", "readwrite", (s) => s.put(keys, "keys")); // part of first load, not a flush
  return keys;
}

/** Forget the link: credentials, keys and outgoing messages (what a logout wipes). */
async function wipeProfile() {
  await idbDelete("user", "creds");
  await idbDelete("user", "keys");
  await idbClear("message");
}
