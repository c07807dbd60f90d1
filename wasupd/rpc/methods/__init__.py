"""JSON-RPC method handlers, one module per noun, and the one table of method names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasupd.rpc.dispatch import Dispatcher, Handler

if TYPE_CHECKING:
    from wasupd.app import App


def register_all(d: Dispatcher, app: App | Any) -> None:
    """Register every method of DESIGN.md's contract (and a few more) on `d`."""
    from wasupd.rpc.methods.daemon import DaemonMethods
    from wasupd.rpc.methods.messages import MessageMethods
    from wasupd.rpc.methods.sessions import SessionMethods

    dm, sm, mm = DaemonMethods(app), SessionMethods(app), MessageMethods(app)
    table: dict[str, Handler] = {
        "daemon.status": dm.status,
        "daemon.health": dm.health,
        "daemon.reload": dm.reload,
        "daemon.backup": dm.backup,
        "events.subscribe": dm.subscribe,
        "metrics.get": dm.metrics,
        "session.create": sm.create,
        "session.list": sm.list,
        "session.get": sm.get,
        "session.start": sm.start,
        "session.stop": sm.stop,
        "session.restart": sm.restart,
        "session.logout": sm.logout,
        "session.delete": sm.delete,
        "session.qr": sm.qr,
        "session.pair": sm.pair,
        "session.export": sm.export,
        "session.import": sm.import_,
        "profiles.rekey": sm.rekey,
        "message.send": mm.send,
        "message.get": mm.get,
        "message.cancel": mm.cancel,
        "outbox.list": mm.outbox,
        "inbox.list": mm.inbox,
        "webhooks.list": mm.webhooks,
        "webhooks.retry": mm.webhooks_retry,
    }
    for name, handler in table.items():
        d.register(name, handler)


def documented_dispatcher() -> Dispatcher:
    """A dispatcher with every method registered (no daemon behind it), for docs and tests."""
    d = Dispatcher()
    register_all(d, object())
    return d
