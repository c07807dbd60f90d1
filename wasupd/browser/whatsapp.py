"""Every WhatsApp-specific name the driver uses: module names, states, selectors, URL markers.

When WhatsApp Web changes, this is the one file to edit. The injected script receives these
names as its configuration (`INJECT_CONFIG`), so it contains no WhatsApp names of its own.
Sources: reference/whatsapp-web.md (sections noted per group).
"""

from __future__ import annotations

import json
from typing import Any

# §1a, §9: reached with window.require(name) once window.Debug.VERSION exists.
READY_GLOBAL = "Debug"  # window.Debug.VERSION
MODULES = {
    "socket": "WAWebSocketModel",  # .Socket: state, hasSynced, change:* (model, value), logout()
    "conn": "WAWebConnModel",  # .Conn: ref, change:ref, wid
    "cmd": "WAWebCmd",  # .Cmd: logout, logout_from_bridge, refreshQR()
    "collections": "WAWebCollections",  # .Msg, .Chat
    "widFactory": "WAWebWidFactory",  # createWid
    "msgKey": "WAWebMsgKey",  # class + newId()
    "meUser": "WAWebUserPrefsMeUser",  # getMaybeMePnUser
    "sendMsg": "WAWebSendMsgChatAction",  # addAndSendMsgToChat -> [msgPromise, resultPromise]
    "findChat": "WAWebFindChatAction",  # findOrCreateLatestChat
    "queryExists": "WAWebQueryExistsJob",  # queryWidExists
    "ephemeral": "WAWebGetEphemeralFieldsMsgActionsUtils",  # getEphemeralFields
    "altLinking": "WAWebAltDeviceLinkingApi",  # pairing by phone number (§3)
    "base64": "WABase64",  # encodeB64
    "regClient": "WAWebCompanionRegClientUtils",  # DEVICE_PLATFORM
    "advSignature": "WAWebAdvSignatureApi",  # getADVSecretKey
    "prefsInfo": "WAWebUserPrefsInfoStore",  # waNoiseInfo
    "signalStore": "WAWebSignalStoreApi",  # waSignalStore
    "offline": "WAWebOfflineHandler",  # OfflineMessageHandler.getOfflineDeliveryProgress
}

# §2a: Socket.state values.
STATES_WAITING = ("OPENING", "UNLAUNCHED", "PAIRING")
STATES_QR = ("UNPAIRED", "UNPAIRED_IDLE")
STATE_IDLE = "UNPAIRED_IDLE"
STATE_CONNECTED = "CONNECTED"
# Refused for good: the session fails with the state as its reason.
STATES_FATAL = ("TOS_BLOCK", "SMB_TOS_BLOCK", "DEPRECATED_VERSION", "PROXYBLOCK")
# Another WhatsApp Web took over (CONFLICT) or the connection timed out: degraded, WhatsApp
# reconnects by itself (TIMEOUT) or the liveness probe escalates.
STATES_DEGRADED = ("CONFLICT", "TIMEOUT")

# §1c, §2c: the DOM, for the QR fallback and the reload button.
SELECTOR_QR_CONTAINER = "div[data-ref]"
SELECTOR_QR_CANVAS = "div[data-ref] canvas"
SELECTOR_QR_RELOAD = "div[data-ref] button"
SELECTOR_MAIN_UI = "[data-icon='search'], [data-icon='chat']"

# §2b: logout navigates here.
LOGOUT_URL_MARKER = "post_logout=1"

# §1b: server cadence of QR refs (seconds): the first lives 60 s, the next 20 s each.
FIRST_REF_SECONDS = 60.0
NEXT_REF_SECONDS = 20.0

# §4a: chat ids.
USER_SERVER = "c.us"
GROUP_SERVER = "g.us"

# §4b: the only send result that means success.
SEND_OK = "OK"

# The DevTools binding the injected script reports through.
BINDING = "__wasupdReport"


def inject_config() -> str:
    """The JSON configuration handed to inject.js."""
    cfg: dict[str, Any] = {
        "binding": BINDING,
        "readyGlobal": READY_GLOBAL,
        "modules": MODULES,
        "qrSelector": SELECTOR_QR_CONTAINER,
    }
    return json.dumps(cfg)
