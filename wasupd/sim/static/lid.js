/* lid.js: what the page knows of LIDs (§4e). A migrated account's page keeps a LID <-> number
 * cache, learnt from what the server shows it (chats, messages, queryWidExists); it is what
 * WAWebApiContact reads, and what findOrCreateLatestChat needs to open a chat by number.
 * An old-world page (the server sent no own LID) has no LIDs: the cache stays empty. */

const Lids = { enabled: false, byLid: new Map(), byPn: new Map() };

/** Learn [lid, pn] pairs; pn null: the number is hidden (the LID is still known). */
function learnLids(pairs) {
  if (!Lids.enabled) return;
  for (const [lid, pn] of pairs || []) {
    if (!lid || !pn) continue;
    Lids.byLid.set(lid, pn);
    Lids.byPn.set(pn, lid);
  }
}

const lidOf = (wid) => { const w = createWid(wid); return w.isLid() ? w : (Lids.byPn.has(w._serialized) ? createWid(Lids.byPn.get(w._serialized)) : undefined); };
const pnOf = (wid) => { const w = createWid(wid); return w.isLid() ? (Lids.byLid.has(w._serialized) ? createWid(Lids.byLid.get(w._serialized)) : undefined) : w; };

// WAWebApiContact: the lookups wwebjs (LidUtils) and wa-js make; undefined when not known.
const ApiContact = {
  getPhoneNumber: (wid) => (createWid(wid).isLid() ? pnOf(wid) : undefined),
  getCurrentLid: (wid) => (createWid(wid).isLid() ? undefined : lidOf(wid)),
  getAlternateUserWid: (wid) => (createWid(wid).isLid() ? pnOf(wid) : lidOf(wid)),
  hasLidMapping: (wid) => !!(createWid(wid).isLid() ? pnOf(wid) : lidOf(wid)),
};

// WAWebLidMigrationUtils: toPn / toLid, null when not known.
const LidMigrationUtils = {
  toPn: (wid) => { const w = createWid(wid); return w.isLid() ? pnOf(w) || null : w; },
  toLid: (wid) => lidOf(wid) || null,
};

/** The chat id this page uses for user `wid`, or null when a migrated page does not know the
 * number's LID (findOrCreateLatestChat then fails with "No LID for user"). */
function chatIdFor(wid) {
  const w = createWid(wid);
  if (!Lids.enabled || w.isLid() || !w.isUser()) return w;
  return lidOf(w) || null;
}
