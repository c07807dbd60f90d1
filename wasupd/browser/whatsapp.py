"""Every WhatsApp-specific name the driver uses: modules, states, selectors, URL markers, cadences.

When WhatsApp Web changes, this is the one file to edit. The injected script (inject.js) gets
these names as its configuration (`inject_config()`) and the page functions of driver.py get
them as arguments or through `MODULES`, so neither holds a WhatsApp name of its own.
Source: reference/whatsapp-web.md (the section is noted per group).
"""

from __future__ import annotations

import json
from typing import Any

# §1a, §9: the page is injectable once window.Debug.VERSION exists; modules are reached with
# window.require(name) (Meta's loader, which throws for unknown names).
READY_GLOBAL = "Debug"
READY_FIELD = "VERSION"
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
    "altLinking": "WAWebAltDeviceLinkingApi",  # pairing by phone number (§3)
    "base64": "WABase64",  # encodeB64
    "regClient": "WAWebCompanionRegClientUtils",  # DEVICE_PLATFORM
    "advSignature": "WAWebAdvSignatureApi",  # getADVSecretKey()
    "prefsInfo": "WAWebUserPrefsInfoStore",  # waNoiseInfo.get()
    "signalStore": "WAWebSignalStoreApi",  # waSignalStore.getRegistrationInfo()
    "offline": "WAWebOfflineHandler",  # OfflineMessageHandler.getOfflineDeliveryProgress()
}
# Without these the module route is useless and the DOM fallback takes over.
CORE_MODULES = ("socket", "conn", "cmd", "collections")
# How long the page may take before its module loader is reachable (wwebjs waits 30 s by
# default); after that the DOM fallback reports what the page shows.
MODULES_TIMEOUT_S = 30.0

# §2a: Socket.state values.
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

# §1c, §2c, §9: the DOM, for the QR fallback, the reload button and the main UI.
SELECTOR_QR_CONTAINER = "div[data-ref]"  # data-ref holds the full QR payload
QR_ATTRIBUTE = "data-ref"
SELECTOR_QR_RELOAD = "div[data-ref] button"  # older markup: div[data-ref] > span > button
SELECTOR_MAIN_UI = "[data-icon='search'], [data-icon='chat']"

# §2b: a logout navigates to a URL carrying this marker.
LOGOUT_URL_MARKER = "post_logout=1"

# §1b: server cadence of QR refs (seconds): the first lives 60 s, each later one 20 s.
FIRST_REF_SECONDS = 60.0
NEXT_REF_SECONDS = 20.0

# §3: a pairing code is refreshed at most this many times (wa-js MAX_AUTO_REFRESHES).
PAIRING_TYPE = "ALT_DEVICE_LINKING"
PAIRING_CODE_MAX_REFRESHES = 5

# §4a: chat ids and the serialized message key `<fromMe>_<remote>_<id>`.
USER_SERVER = "c.us"
GROUP_SERVER = "g.us"


def message_key(chat_id: str, message_id: str, *, from_me: bool = True) -> str:
    """The serialized key `Msg.get()` takes (§4a)."""
    return f"{'true' if from_me else 'false'}_{chat_id}_{message_id}"


# §4b: the message this device sends (merged with the key, body, chat and ephemeral fields).
MESSAGE_TYPE_TEXT = "chat"
MESSAGE_TYPE_CIPHERTEXT = "ciphertext"  # not decrypted yet: wait for change:type (§4c)
SEND_OK = "OK"  # the only SendMsgResult that means sent

# The DevTools binding the injected script reports through.
BINDING = "__wasupdReport"


def inject_config() -> str:
    """The JSON configuration handed to inject.js (every name it needs)."""
    cfg: dict[str, Any] = {
        "binding": BINDING,
        "readyGlobal": READY_GLOBAL,
        "readyField": READY_FIELD,
        "modules": MODULES,
        "coreModules": list(CORE_MODULES),
        "modulesTimeoutMs": MODULES_TIMEOUT_S * 1000,
        "qrStates": list(STATES_QR),
        "qrSelector": SELECTOR_QR_CONTAINER,
        "qrAttribute": QR_ATTRIBUTE,
        "reloadSelector": SELECTOR_QR_RELOAD,
        "mainSelector": SELECTOR_MAIN_UI,
        "ciphertext": MESSAGE_TYPE_CIPHERTEXT,
    }
    return json.dumps(cfg)
