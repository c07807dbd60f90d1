/* boot.js: the page loads (progress bar), holds its resting weight, then exposes
 * window.Debug.VERSION and window.require together, as WhatsApp Web's bundle does once it has
 * run (docs/whatsapp-web.md §1a), and connects to the server. */

renderLoading(0);
holdMiB(Weight.resting, Number(CFG.pageWeightMiB || 0));
loadKeys().then((keys) => {
  Link.keys = keys;
  setTimeout(() => {
    Object.defineProperty(window, "require", { value: requireModule, configurable: true, writable: true });
    window.Debug = { VERSION: CFG.version };
    connect();
  }, CFG.bootMs);
}, (e) => console.error("IndexedDB unavailable: the page cannot keep a link", e));
