/* bot.js: whatsapp-web.js, unmodified, as a bot author runs it, driven over JSON lines.
 *
 * stdout: one JSON object per line, either an event {"event": "qr" | "authenticated" |
 * "ready" | "message" | "disconnected" | "fatal", ...} or the answer to a request
 * {"id": n, "result": ...} / {"id": n, "error": "..."}.
 * stdin: requests {"id": n, "op": "send" | "numberId" | "lidAndPhone" | "destroy", "args": {...}}.
 * Configuration comes as JSON in WWEBJS_BOT_CONFIG: chromium, profile, args. The end of stdin
 * destroys the client (closing its Chromium) and exits. */
"use strict";

const readline = require("node:readline");
const { Client } = require("whatsapp-web.js");

const cfg = JSON.parse(process.env.WWEBJS_BOT_CONFIG);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const text = (e) => String((e && e.message) || e);

const client = new Client({
  puppeteer: {
    executablePath: cfg.chromium,
    headless: true,
    userDataDir: cfg.profile,
    args: cfg.args,
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  },
  // Nothing written to the working directory (the default 'local' cache keeps index.html).
  webVersionCache: { type: "none" },
});

client.on("qr", (qr) => out({ event: "qr", qr }));
client.on("authenticated", () => out({ event: "authenticated" }));
client.on("auth_failure", (m) => out({ event: "auth_failure", message: String(m) }));
client.on("ready", () => out({ event: "ready", wid: client.info?.wid?._serialized ?? null }));
client.on("message", (m) =>
  out({ event: "message", from: m.from, to: m.to, body: m.body, remote: m.id.remote, fromMe: m.fromMe }),
);
client.on("disconnected", (reason) => out({ event: "disconnected", reason: String(reason) }));

const ops = {
  async send({ to, text: body }) {
    const m = await client.sendMessage(to, body);
    return m ? { id: m.id._serialized, from: m.from, to: m.to, body: m.body } : null;
  },
  async numberId({ number }) {
    const wid = await client.getNumberId(number);
    return wid ? wid._serialized : null;
  },
  lidAndPhone: ({ ids }) => client.getContactLidAndPhone(ids),
  async destroy() {
    await client.destroy();
    return true;
  },
};

let closing = null;
const shutdown = () => {
  closing = closing || client.destroy().catch(() => {}).then(() => process.exit(0));
  return closing;
};

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    out({ id: null, error: `not a JSON request: ${text(e)}` });
    return;
  }
  const op = Object.prototype.hasOwnProperty.call(ops, req.op) ? ops[req.op] : null;
  if (!op) {
    out({ id: req.id, error: `unknown op ${JSON.stringify(req.op)}; known: ${Object.keys(ops).join(", ")}` });
    return;
  }
  try {
    out({ id: req.id, result: (await op(req.args || {})) ?? null });
  } catch (e) {
    out({ id: req.id, error: text(e) });
  }
});
lines.on("close", shutdown);

client.initialize().catch((e) => {
  out({ event: "fatal", error: String((e && e.stack) || e) });
  shutdown();
});
