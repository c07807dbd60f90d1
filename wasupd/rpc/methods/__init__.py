"""JSON-RPC method handlers, one module per noun, and the one table of method names."""

from __future__ import annotations

from wasupd.rpc.dispatch import Dispatcher, Handler
from wasupd.rpc.methods.campaigns import CampaignMethods
from wasupd.rpc.methods.daemon import DaemonMethods
from wasupd.rpc.methods.fleet import FleetMethods
from wasupd.rpc.methods.media import MediaMethods
from wasupd.rpc.methods.messages import MessageMethods
from wasupd.rpc.methods.sessions import SessionMethods


def method_table(
    dm: DaemonMethods,
    sm: SessionMethods,
    mm: MessageMethods,
    cm: CampaignMethods,
    media: MediaMethods,
    fm: FleetMethods,
) -> dict[str, Handler]:
    """Every method of the control socket, by its name (the names are the contract)."""
    return {
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
        "media.upload": media.upload,
        "media.get": media.get,
        "outbox.list": mm.outbox,
        "inbox.list": mm.inbox,
        "contacts.list": mm.contacts,
        "webhooks.list": mm.webhooks,
        "webhooks.retry": mm.webhooks_retry,
        "campaign.create": cm.create,
        "campaign.add": cm.add,
        "campaign.discard": cm.discard,
        "campaign.start": cm.start,
        "campaign.list": cm.listing,
        "campaign.get": cm.get,
        "campaign.pause": cm.pause,
        "campaign.resume": cm.resume,
        "campaign.cancel": cm.cancel,
        "campaign.report": cm.report,
        "optout.list": cm.optout_list,
        "optout.add": cm.optout_add,
        "optout.rm": cm.optout_rm,
        "host.list": fm.hosts,
        "host.drain": fm.drain,
        "session.move": fm.move,
    }


def register_methods(
    d: Dispatcher,
    dm: DaemonMethods,
    sm: SessionMethods,
    mm: MessageMethods,
    cm: CampaignMethods,
    media: MediaMethods,
    fm: FleetMethods,
) -> Dispatcher:
    """Register every method of `method_table` on `d`; returns `d`."""
    for name, handler in method_table(dm, sm, mm, cm, media, fm).items():
        d.register(name, handler)
    return d


def documented_dispatcher() -> Dispatcher:
    """Every method registered for its signature and docstring only (no daemon behind it:
    the handler objects are never initialised), for docs and tests."""
    return register_methods(
        Dispatcher(),
        DaemonMethods.__new__(DaemonMethods),
        SessionMethods.__new__(SessionMethods),
        MessageMethods.__new__(MessageMethods),
        CampaignMethods.__new__(CampaignMethods),
        MediaMethods.__new__(MediaMethods),
        FleetMethods.__new__(FleetMethods),
    )
