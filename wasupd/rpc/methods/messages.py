"""`message.*`, `outbox.list`, `inbox.list`, `contacts.list`, `webhooks.list`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from wasupd.addressing import parse_recipient
from wasupd.config import Config
from wasupd.errors import InvalidArgument, InvalidState
from wasupd.messaging.media import MediaIntake
from wasupd.messaging.service import Messaging
from wasupd.messaging.webhooks import Webhooks
from wasupd.rpc.server import Context
from wasupd.sessions import SessionManager
from wasupd.store.messages import WAITING, MediaRef, MessageRepo, NewMessage, OutboxMessage
from wasupd.supervision.states import SessionState


class MessageMethods:
    """Sending, inspecting and cancelling messages; the inbox; webhook deliveries."""

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        sessions: SessionManager,
        messaging: Messaging,
        repo: MessageRepo,
        webhooks: Webhooks,
        suppressed: Callable[[str], Awaitable[bool]] | None = None,
        intake: MediaIntake | None = None,
    ) -> None:
        self.config, self.sessions, self.messaging = config, sessions, messaging
        self.repo, self._webhooks, self._suppressed = repo, webhooks, suppressed
        self.intake = intake

    async def send(
        self,
        ctx: Context,
        to: str,
        text: str = "",
        session: str = "auto",
        idempotency_key: str | None = None,
        force: bool = False,
        file: str | None = None,
        kind: str | None = None,
        filename: str = "",
    ) -> dict[str, Any]:
        """Queue a message durably; returns it (with its id) once committed.

        A text, or a file: `file` is the token of a finished `media.upload`, `text` its
        caption (may be empty), `kind` one of document, image, video, audio, voice, sticker
        (default: from the file's content), `filename` what the recipient sees. The file is
        checked against WhatsApp's size limit for its kind and moved into the daemon's media
        store before the answer, so the caller may delete its own copy at once.

        `to`: a phone number with country code (`+`, spaces, dashes accepted) or a chat id
        (`<digits>@c.us`, `<digits>@lid`, `<id>@g.us`); a number is resolved as WhatsApp Web
        does before the send (its LID chat for a migrated contact). `session`: a session
        name, or `auto` to send from the pool (the contact's last session, by number or LID,
        when connected, else by remaining capacity). A repeated `idempotency_key` returns the
        first message and never sends twice. A contact on the
        opt-out suppression list is refused unless `force`.
        """
        if not text and file is None:
            raise InvalidArgument("the message text is empty")
        size, limit = len(text.encode("utf-8")), self.config().send.max_text_bytes
        if size > limit:
            raise InvalidArgument(
                f"the message is {size} bytes; the limit is {limit} (send.max_text_bytes)"
            )
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise InvalidArgument("idempotency_key must be 1 to 200 characters")
        chat_id = parse_recipient(to)
        if not force and self._suppressed is not None and await self._suppressed(chat_id):
            raise InvalidState(
                f"{to} opted out (on the suppression list): not sent; `--force` sends anyway,"
                " `wasupctl optout rm` takes the contact off the list"
            )
        if session != "auto":
            self.sessions.runner(session)  # SessionNotFound before a file is taken
        media = await self._take_file(file, kind, filename)
        assigned: str | None
        if session == "auto":
            assigned = await self.messaging.pick_session(chat_id)
        else:
            assigned = session
        msg = await self.messaging.enqueue(
            NewMessage(
                session=assigned,
                from_spec=session,
                chat_id=chat_id,
                body=text,
                idempotency_key=idempotency_key,
                wait_reason="" if assigned else "no session of the pool is connected",
                media=media,
            )
        )
        return self._explain(msg)

    async def _take_file(
        self, file: str | None, kind: str | None, filename: str
    ) -> MediaRef | None:
        """The uploaded file, checked and in the media store; None for a text."""
        if file is None:
            if kind is not None or filename:
                raise InvalidArgument("kind and filename go with a file (upload it first)")
            return None
        if self.intake is None:
            raise InvalidArgument("this daemon takes no files")
        if len(filename) > 255 or "/" in filename:
            raise InvalidArgument("filename must be a plain name of at most 255 characters")
        return await self.intake.accept(file, kind, filename)

    def _explain(self, msg: OutboxMessage) -> dict[str, Any]:
        """The message as answered, saying why a waiting message waits when its session cannot
        send (not stored: it changes)."""
        out = msg.as_dict()
        name = msg.session
        if msg.state in WAITING and name and not msg.wait_reason:
            state = self.sessions.state_anywhere(name)
            if state is None:
                out["wait_reason"] = f"session {name} does not exist"
            elif state is not SessionState.CONNECTED:
                out["wait_reason"] = f"session {name} is {state.value}"
        return out

    async def get(self, ctx: Context, id: str) -> dict[str, Any]:
        """One outgoing message: state (queued, sending, sent, delivered, read, failed, cancelled),
        attempts, why and until when it waits, timestamps."""
        return self._explain(await self.repo.get(id))

    async def cancel(self, ctx: Context, id: str) -> dict[str, Any]:
        """Cancel a message that is still queued."""
        return (await self.messaging.cancel(id)).as_dict()

    async def outbox(
        self, ctx: Context, session: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Outgoing messages, newest first; queued ones say why and until when they wait."""
        rows = await self.repo.outbox(session=session, state=state, limit=max(1, min(limit, 10000)))
        return [self._explain(m) for m in rows]

    async def inbox(
        self, ctx: Context, session: str | None = None, limit: int = 50, after_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Received messages, oldest first (the latest `limit`, or those after `after_id`)."""
        return await self.repo.inbox(
            session=session, limit=max(1, min(limit, 10000)), after_id=after_id
        )

    async def contacts(
        self, ctx: Context, session: str | None = None, limit: int = 200
    ) -> list[dict[str, Any]]:
        """Contacts per session, the most recent interaction first: the person's number
        (`pn`, `<digits>@c.us`) and LID (`lid`, `<digits>@lid`), either null when WhatsApp did
        not say it, the push name, and with that session `first_at`, `last_at` (unix times),
        `msgs_in` and `msgs_out`. A number and a LID of one person are one contact."""
        if session:
            self.sessions.runner(session)  # SessionNotFound for unknown names
        return await self.repo.contacts.list(session=session, limit=max(1, min(limit, 10000)))

    async def webhooks(
        self,
        ctx: Context,
        state: Literal["pending", "failed", "delivered"] = "failed",
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Webhook deliveries in a state (failures by default), newest first."""
        return await self._webhooks.list(state, max(1, min(limit, 10000)))

    async def webhooks_retry(
        self, ctx: Context, ids: list[str] | None = None, all: bool = False
    ) -> dict[str, list[str]]:
        """Deliver failed webhooks again, from their first attempt: the deliveries `ids`, or
        every failed one with `all`. `requeued` lists those queued again, `skipped` the ids
        that are not failed deliveries (unknown, pending or already delivered)."""
        if bool(ids) == all:
            raise InvalidArgument("give the delivery ids to retry, or all=true (not both)")
        requeued, skipped = await self._webhooks.retry(None if all else ids)
        return {"requeued": requeued, "skipped": skipped}
