/* wwebjs_clients.js: N whatsapp-web.js clients in one Node process, as its documentation sets
 * one up (LocalAuth, puppeteer launch options), for bench/footprint.py.
 *
 * Configuration: the JSON file named by the first argument: chromium (executablePath), dataPath (the
 * LocalAuth directory), clients (how many), authTimeoutMs, args (the Chromium flags that steer
 * https://web.whatsapp.com/ to the simulator, plus the documented --no-sandbox for root).
 * stdout: JSON lines {"event": "qr", "client": i} at a client's first QR,
 * {"event": "fatal", "client": i, "error": "..."} if it cannot start.
 * The end of stdin (or SIGTERM) destroys every client (closing its Chromium) and exits. */
"use strict";

const fs = require("node:fs");
const readline = require("node:readline");
const { Client, LocalAuth } = require("whatsapp-web.js");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const clients = [];
for (let i = 0; i < cfg.clients; i++) {
  const client = new Client({
    authStrategy: new LocalAuth({ clientId: `c${i}`, dataPath: cfg.dataPath }),
    puppeteer: { executablePath: cfg.chromium, args: cfg.args },
    // How long inject() waits for the page's modules (default 30 s): on a loaded machine five
    // pages can take longer, and a client that gives up is no measurement. Memory is the same.
    authTimeoutMs: cfg.authTimeoutMs,
    // Nothing written to the working directory (the default 'local' cache keeps index.html).
    webVersionCache: { type: "none" },
  });
  let seen = false;
  client.on("qr", () => {
    if (!seen) out({ event: "qr", client: i });
    seen = true;
  });
  clients.push(client);
}

let closing = null;
const shutdown = () => {
  closing =
    closing ||
    Promise.allSettled(clients.map((c) => c.destroy())).then(() => process.exit(0));
  return closing;
};
process.on("SIGTERM", shutdown);
readline.createInterface({ input: process.stdin }).on("close", shutdown);

clients.forEach((client, i) =>
  client.initialize().catch((e) => out({ event: "fatal", client: i, error: String((e && e.stack) || e) })),
);
