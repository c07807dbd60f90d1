/* media.js: WhatsApp Web's media path (§4g), with the module names and steps whatsapp-web.js
 * 1.34.x uses (src/util/Injected/Utils.js processMediaData; Message.downloadMedia): a File is
 * wrapped as OpaqueData, prepared (prepRawMedia -> waitForPrep: the kind, filehash, size),
 * given a MediaObject by filehash, uploaded (uploadMedia -> mediaEntry with the directPath),
 * then sent as a message carrying the references. A recipient's page downloads by directPath
 * and checks the filehash. No encryption is modelled (the media key is a stand-in). */

const sha256B64 = async (buffer) => encodeB64(await crypto.subtle.digest("SHA-256", buffer));

class OpaqueData {
  constructor(blob) { this.blob = blob; this.type = blob.type; this._url = null; }
  /** createFromData(blob|File, mimetype): the bytes WhatsApp Web passes around while preparing. */
  static async createFromData(data, mimetype) {
    const blob = data instanceof Blob ? data : new Blob([data], { type: mimetype });
    const opaque = new OpaqueData(mimetype && blob.type !== mimetype ? new Blob([blob], { type: mimetype }) : blob);
    opaque.name = data && data.name ? data.name : undefined;
    return opaque;
  }
  url() { if (!this._url) this._url = URL.createObjectURL(this.blob); return this._url; }
  formData() { return this.blob; }
  autorelease() { /* the real one revokes the URL when the message is gone */ }
  arrayBuffer() { return this.blob.arrayBuffer(); }
  get size() { return this.blob.size; }
}

/** The kind WhatsApp Web gives a file: by its MIME type, unless the sender forced one. */
function mediaKind(mimetype, p) {
  if (p.asDocument) return "document";
  if (p.asSticker) return "sticker";
  if (/^image\//.test(mimetype)) return "image";
  if (/^video\//.test(mimetype)) return "video";
  if (/^audio\//.test(mimetype)) return p.isPtt ? "ptt" : "audio";
  return "document";
}

class MediaData extends Model {
  toJSON() {
    const { type, mimetype, filehash, size, filename, isGif, mediaStage, mediaBlob } = this;
    return { type, mimetype, filehash, size, filename, isGif, mediaStage, mediaBlob };
  }
}

/** prepRawMedia(opaque, params) -> {waitForPrep(): Promise<MediaData>}. */
function prepRawMedia(opaque, params) {
  const p = params || {};
  const prep = (async () => {
    const buffer = await opaque.arrayBuffer();
    const type = mediaKind(opaque.type, p);
    return new MediaData({ type, mimetype: opaque.type, size: opaque.size, filehash: await sha256B64(buffer),
      mediaBlob: opaque, isGif: !!p.asGif && type === "video", filename: type === "document" ? opaque.name : undefined,
      mediaStage: "RESOLVED" });
  })();
  return { waitForPrep: () => prep };
}

class MediaObject extends Model {
  consolidate(json) { this.set(json); if (json && json.type) this.type = json.type; }
}
const MediaObjects = new Map(); // filehash -> MediaObject
const getOrCreateMediaObject = (filehash) => {
  if (!MediaObjects.has(filehash)) MediaObjects.set(filehash, new MediaObject({ filehash, contentInfo: {} }));
  return MediaObjects.get(filehash);
};
const BlobCache = new Map(); // filehash -> the bytes, as InMemoryMediaBlobCache

/** uploadMedia({mimetype, mediaObject, mediaType}) -> {mediaEntry}: the bytes to the media host. */
async function uploadMedia({ mimetype, mediaObject, mediaType }) {
  const blob = mediaObject.mediaBlob ? mediaObject.mediaBlob.formData() : BlobCache.get(mediaObject.filehash);
  if (!blob) throw new Error("media-fault: nothing to upload for " + mediaObject.filehash);
  const res = await fetch(`/mms/${encodeURIComponent(mediaType)}`, { method: "POST", body: blob,
    headers: { "Content-Type": mimetype || "application/octet-stream" } });
  if (!res.ok) throw new Error(`media upload failed: HTTP ${res.status}`);
  const entry = await res.json();
  if (entry.filehash !== mediaObject.filehash) throw new Error("media upload failed: the host hashed other bytes");
  return { mediaEntry: { mmsUrl: location.origin + entry.directPath, deprecatedMms3Url: location.origin + entry.directPath,
    directPath: entry.directPath, mediaKey: entry.filehash, mediaKeyTimestamp: Math.floor(Date.now() / 1000),
    encFilehash: entry.encFilehash, uploadHash: entry.encFilehash, sidecar: undefined, firstFrameSidecar: undefined } };
}

/** downloadAndMaybeDecrypt({directPath, filehash, ...}) -> ArrayBuffer, checked against filehash. */
async function downloadAndMaybeDecrypt({ directPath, filehash }) {
  const res = await fetch(directPath);
  if (!res.ok) { const e = new Error(`media download failed: HTTP ${res.status}`); e.status = res.status; throw e; }
  const buffer = await res.arrayBuffer();
  if (filehash && (await sha256B64(buffer)) !== filehash) throw new Error("media download failed: hash mismatch");
  return buffer;
}

const MEDIA_MODULES = {
  WAWebMediaOpaqueData: OpaqueData,
  WAWebPrepRawMedia: { prepRawMedia },
  WAWebMediaStorage: { getOrCreateMediaObject },
  WAWebMmsMediaTypes: {
    msgToMediaType: ({ type, isGif, isNewsletter }) => (isNewsletter ? "newsletter-" : "") + (isGif ? "gif" : type),
    castToV4: (t) => t,
  },
  WAWebMediaDataUtils: { shouldUseMediaCache: (t) => t === "image" || t === "sticker" },
  WAWebMediaInMemoryBlobCache: { InMemoryMediaBlobCache: { put: (k, v) => BlobCache.set(k, v), get: (k) => BlobCache.get(k) } },
  WAWebMediaMmsV4Upload: { uploadMedia, uploadUnencryptedMedia: uploadMedia },
  WAWebDownloadManager: { downloadManager: { downloadAndMaybeDecrypt } },
};

// The media fields a Msg carries (what the server routes; the blob stays on this page).
const MEDIA_FIELDS = ["mimetype", "size", "filehash", "encFilehash", "directPath", "mediaKey", "filename", "caption"];
const mediaOf = (msg) => (msg.directPath ? Object.fromEntries(MEDIA_FIELDS.map((k) => [k, msg[k] ?? null])) : null);
