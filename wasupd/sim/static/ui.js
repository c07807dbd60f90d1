/* ui.js: the DOM that DOM-based drivers read (docs/whatsapp-web.md §1c, §2c, §9):
 *  loading  #app > div > div > div[2] > progress (value = percent), div[3] = text
 *  landing  #app > div > .landing-wrapper with div[data-ref="<full QR payload>"] > canvas,
 *           and div[data-ref] > span > button (reload) once the refs ran out
 *  code     the pairing code, 4+4 characters
 *  main     .app.two[tabindex] with [data-icon='chat'] and [data-icon='search'] */

const app = document.getElementById("app");
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const ICONS = {
  chat: '<svg viewBox="0 0 24 24" width="24" height="24"><path fill="currentColor" d="M19 3H5a2 2 0 0 0-2 2v14l4-4h12a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2z"/></svg>',
  search: '<svg viewBox="0 0 24 24" width="20" height="20"><path fill="currentColor" d="M15.5 14h-.8l-.3-.3A6.5 6.5 0 1 0 14 15.5l.3.3v.8l5 5 1.5-1.5-5-5zm-6 0A4.5 4.5 0 1 1 14 9.5 4.5 4.5 0 0 1 9.5 14z"/></svg>',
  menu: '<svg viewBox="0 0 24 24" width="24" height="24"><path fill="currentColor" d="M12 7a2 2 0 1 0-2-2 2 2 0 0 0 2 2zm0 2a2 2 0 1 0 2 2 2 2 0 0 0-2-2zm0 6a2 2 0 1 0 2 2 2 2 0 0 0-2-2z"/></svg>',
  refresh: '<svg viewBox="0 0 24 24" width="24" height="24"><path fill="currentColor" d="M17.6 6.4A8 8 0 1 0 19.7 14h-2.1a6 6 0 1 1-1.4-6.2L13 11h7V4z"/></svg>',
};
const icon = (name) => `<span data-icon="${name}">${ICONS[name]}</span>`;
const UI = { view: "", progress: 0 };

function renderLoading(percent) {
  UI.view = "loading";
  app.innerHTML = `<div class="startup"><div class="startup-box">
    <div class="startup-logo">${ICONS.chat}</div>
    <div class="startup-progress"><progress value="${percent}" max="100"></progress></div>
    <div class="startup-text">WhatsApp</div></div></div>`;
}

function setProgress(percent) {
  UI.progress = percent;
  const bar = app.querySelector("progress");
  if (bar) bar.value = percent;
}

const STEPS = `<ol class="landing-steps"><li>Open WhatsApp on your phone</li>
  <li>Tap <b>Menu</b> or <b>Settings</b> and select <b>Linked devices</b></li>
  <li>Tap on <b>Link a device</b></li><li>Point your phone to this screen to capture the QR code</li></ol>`;

function landing(inner, aside) {
  UI.view = "landing";
  app.innerHTML = `<div class="landing"><div class="landing-wrapper">
    <div class="landing-main"><h1 class="landing-title">Log into WhatsApp Web</h1>${aside}</div>
    ${inner}</div></div>`;
}

/** The QR for `payload`: `matrix` rows of 0/1 drawn on the canvas; `idle` greys it out and adds the reload button. */
function renderQr(payload, matrix, idle) {
  const reload = idle ? `<span><button type="button" class="qr-reload">${ICONS.refresh}<div>Click to reload QR code</div></button></span>` : "";
  landing(`<div class="qr-box${idle ? " qr-idle" : ""}" data-ref="${esc(payload)}">
      <canvas width="264" height="264" aria-label="Scan me!" role="img"></canvas>${reload}</div>`,
  `${STEPS}<div class="landing-alt"><a href="#" class="link-with-phone">Log in with phone number</a></div>`);
  drawQr(app.querySelector("canvas"), matrix || []);
  const button = app.querySelector("div[data-ref] > span > button");
  if (button) button.addEventListener("click", () => Cmd.refreshQR());
}

function drawQr(canvas, matrix) {
  const g = canvas.getContext("2d");
  g.fillStyle = "#ffffff";
  g.fillRect(0, 0, canvas.width, canvas.height);
  const n = matrix.length;
  if (!n) return;
  const quiet = 4;
  const cell = Math.floor(canvas.width / (n + 2 * quiet)); // whole pixels per module: crisp edges
  const offset = Math.floor((canvas.width - cell * n) / 2);
  g.fillStyle = "#122e31";
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) if (matrix[y][x] === "1") g.fillRect(offset + x * cell, offset + y * cell, cell, cell);
  }
}

function renderCode(code, expired) {
  const chars = code ? code.split("").map((c) => `<span class="code-char">${esc(c)}</span>`) : [];
  const shown = chars.length ? [...chars.slice(0, 4), '<span class="code-sep">-</span>', ...chars.slice(4)].join("") : "";
  landing(`<div class="code-box"><div class="pairing-code${expired ? " code-expired" : ""}" data-link-code="${esc(code || "")}">${shown}</div></div>`,
    `<ol class="landing-steps"><li>Open WhatsApp on your phone</li><li>Tap <b>Menu</b> and select <b>Linked devices</b></li>
     <li>Tap <b>Link a device</b>, then <b>Link with phone number instead</b></li><li>Enter this code on your phone</li></ol>`);
}

function renderMain() {
  UI.view = "main";
  app.innerHTML = `<div class="app two" tabindex="-1">
    <div class="side"><header>${icon("chat")}<span class="me"></span>${icon("menu")}</header>
      <div class="search">${icon("search")}<span>Search or start a new chat</span></div>
      <div class="chat-list" role="grid"></div></div>
    <div class="main"><div class="intro" data-asset-intro-image-light="true"><h2>WhatsApp Web</h2>
      <p>Send and receive messages without keeping your phone online.</p><p class="banner"></p></div></div></div>`;
  refreshMain();
}

function refreshMain() {
  if (UI.view !== "main") return;
  const me = Conn.wid ? `+${Conn.wid.user}` : "";
  app.querySelector(".me").textContent = Conn.pushname ? `${Conn.pushname} (${me})` : me;
  const chats = ChatColl.getModelsArray().sort((a, b) => (b.t || 0) - (a.t || 0)).slice(0, 12);
  app.querySelector(".chat-list").innerHTML = chats.map((c) => {
    const last = c.lastMsg ? c.lastMsg.body : "";
    const ticks = c.lastMsg && c.lastMsg.id.fromMe ? ["🕓", "✓", "✓✓", "✓✓"][Math.max(0, Math.min(3, c.lastMsg.ack))] : "";
    return `<div class="chat-row" role="row" data-id="${esc(c.id._serialized)}"><div class="chat-name">${esc(c.name || c.id.user)}</div>
      <div class="chat-last"><span class="ack ack-${c.lastMsg ? c.lastMsg.ack : 0}">${ticks}</span> ${esc(last)}</div></div>`;
  }).join("");
}

/** A banner over the current screen for states that need the user (CONFLICT, TOS_BLOCK...). */
function renderBanner(state) {
  const text = {
    CONFLICT: 'WhatsApp is open in another window. <button type="button" class="use-here">Use here</button>',
    TIMEOUT: "Computer not connected. Trying to reach WhatsApp…",
    TOS_BLOCK: "This account is not allowed to use WhatsApp.",
    SMB_TOS_BLOCK: "This business account is not allowed to use WhatsApp.",
    PROXYBLOCK: "WhatsApp is unreachable through this network.",
    DEPRECATED_VERSION: "This version of WhatsApp Web is no longer supported. Update to continue.",
  }[state];
  let el = document.querySelector(".state-banner");
  if (!text) { if (el) el.remove(); return; }
  if (!el) { el = document.createElement("div"); el.className = "state-banner"; document.body.prepend(el); }
  el.dataset.state = state;
  el.innerHTML = text;
  const use = el.querySelector(".use-here");
  if (use) use.addEventListener("click", () => Socket.takeover());
}
