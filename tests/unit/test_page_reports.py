"""The driver's report rules without a browser: QR rotation and renewal, pairing codes,
state translation, and dispatch through the table."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from wasupd.browser import whatsapp as wa
from wasupd.browser.reports import PageReports
from wasupd.config import parse_config
from wasupd.supervision.seams import DriverReport


class Page:
    """A PageReports with what it emitted, renewed and crashed on, at a fixed clock."""

    def __init__(self, **qr: Any) -> None:
        self.out: list[DriverReport] = []
        self.renewals = 0
        self.crashes: list[str] = []
        config = parse_config({"qr": qr} if qr else {})
        self.r = PageReports(
            config,
            self.out.append,
            renew_qr=self._renew,
            crash=self.crashes.append,
            clock=lambda: 100.0,
        )

    def _renew(self) -> None:
        self.renewals += 1

    def send(self, k: str, **msg: Any) -> list[DriverReport]:
        before = len(self.out)
        self.r.handle({"k": k, **msg})
        return self.out[before:]


def test_qr_refs_rotate_with_estimated_expiry() -> None:
    """The first ref lives FIRST_REF_SECONDS, later ones NEXT_REF_SECONDS; a repeat is dropped."""
    p = Page()
    (first,) = p.send("qr", ref="r1", payload="P1")
    (second,) = p.send("qr", ref="r2", payload="P2")
    assert p.send("qr", ref="r2", payload="P2") == []
    assert first.data == {
        "payload": "P1",
        "rotation": 0,
        "expires_at": 100.0 + wa.FIRST_REF_SECONDS,
    }
    assert second.data["rotation"] == 1
    assert second.data["expires_at"] == 100.0 + wa.NEXT_REF_SECONDS


def test_refs_running_out_renew_the_qr_then_fail() -> None:
    """UNPAIRED_IDLE renews the QR qr.max_rotations times (rotation back to 0), then fails."""
    p = Page(max_rotations=2)
    p.send("qr", ref="r1", payload="P1")
    for _ in range(2):
        assert p.send("state", state=wa.STATE_IDLE) == []
    assert p.renewals == 2
    (again,) = p.send("qr", ref="r1", payload="P1")  # a new generation may reuse nothing
    assert again.data["rotation"] == 0
    (failed,) = p.send("state", state=wa.STATE_IDLE)
    assert failed.kind == "failed" and "qr.max_rotations = 2" in failed.data["reason"]


def test_connecting_resets_the_renewal_count() -> None:
    """A connect means the renewals so far do not count against a later relink."""
    p = Page(max_rotations=1)
    p.send("state", state=wa.STATE_IDLE)
    p.send("state", state=wa.STATE_CONNECTED, synced=True)
    assert p.r.reloads == 0


def test_while_pairing_refs_are_not_shown_and_idle_is_quiet() -> None:
    """Linking by code: QR refs are not reported and refs running out renew nothing."""
    p = Page()
    p.r.pairing = True
    assert p.send("qr", ref="r1", payload="P1") == []
    (activity,) = p.send("state", state=wa.STATE_IDLE)
    assert activity.kind == "activity" and p.renewals == 0


def test_pairing_codes_and_their_end() -> None:
    """Each renewed code is a code report with its expiry; exhaustion fails the session."""
    p = Page(pairing_code_refresh=60)
    (code,) = p.send("code", code="ABCD1234")
    assert code.kind == "code" and code.data == {"code": "ABCD1234", "expires_at": 160.0}
    (failed,) = p.send("code_exhausted", refreshes=5)
    assert failed.data["reason"] == "pairing code not entered (5 codes expired)"


def test_state_translation() -> None:
    """Syncing before hasSynced, connected with the own number, degraded and fatal with help."""
    p = Page()
    (syncing,) = p.send("state", state=wa.STATE_CONNECTED, synced=False, me="1@c.us")
    assert (syncing.kind, syncing.value, syncing.data["me"]) == ("state", "syncing", "1@c.us")
    (connected,) = p.send("state", state=wa.STATE_CONNECTED, synced=True)
    assert connected.value == "connected" and connected.data["me"] == "1@c.us"
    (degraded,) = p.send("state", state="CONFLICT")
    assert degraded.value == "degraded" and wa.STATE_HELP["CONFLICT"] in degraded.data["reason"]
    (fatal,) = p.send("state", state="TOS_BLOCK")
    assert fatal.kind == "failed" and "TOS_BLOCK" in fatal.data["reason"]


def test_unpaired_after_connected_is_a_logout() -> None:
    """Linked in this page, then unpaired: the phone unlinked the device."""
    p = Page()
    p.send("state", state=wa.STATE_CONNECTED, synced=True)
    (logout,) = p.send("state", state=wa.STATE_UNPAIRED)
    assert logout.kind == "logout" and "unpaired" in logout.data["reason"]


def test_a_new_document_starts_a_new_generation_and_sees_a_logout_url() -> None:
    """Navigation resets rotation and pairing; the logout marker in the URL is a logout."""
    p = Page()
    p.send("qr", ref="r1", payload="P1")
    p.r.pairing = True
    p.r.new_document(f"http://x/?{wa.LOGOUT_URL_MARKER}")
    assert (p.r.rotation, p.r.pairing, p.r.mode) == (0, False, "waiting")
    assert p.out[-1].kind == "logout"


def test_inbound_messages_and_acks_of_own_messages() -> None:
    """A message from the phone's own sends is only activity; acks count for our messages only."""
    p = Page()
    (own,) = p.send("msg", msg={"from_me": True})
    (inbound,) = p.send("msg", msg={"from_me": False, "id": "X", "body": "hi"})
    assert own.kind == "activity" and inbound.kind == "message" and inbound.data["body"] == "hi"
    (ack,) = p.send("ack", msg={"from_me": True, "id": "X"}, ack=3)
    assert ack.kind == "ack" and ack.data["ack"] == 3
    assert p.send("ack", msg={"from_me": False}, ack=3)[0].kind == "activity"


def test_errors_crash_or_are_logged() -> None:
    """A hard page error is a crash; a soft one is only logged."""
    p = Page()
    with capture_logs() as logs:
        assert p.send("error_soft", message="refresh failed") == []
        p.send("error", message="did not load")
    assert p.crashes == ["did not load"]
    assert any(e["event"] == "page_error" for e in logs)


def test_an_unknown_kind_is_logged_and_ignored() -> None:
    """A kind the table does not name is never looked up as a method: logged, nothing emitted."""
    p = Page()
    with capture_logs() as logs:
        assert p.send("__init__") == []
        assert p.send("handle") == []
    assert [e["kind"] for e in logs if e["event"] == "unknown_page_report"] == [
        "__init__",
        "handle",
    ]


def test_the_dom_fallback() -> None:
    """The DOM fallback: the main screen connects, a ref is a QR, the reload button renews."""
    p = Page()
    (qr,) = p.send("dom", ref="2@abc")
    assert qr.kind == "qr" and qr.data["payload"] == "2@abc"
    assert p.send("dom", idle=True) == [] and p.renewals == 1
    (main,) = p.send("dom", main=True)
    assert main.value == "connected"
