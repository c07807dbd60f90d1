"""`campaign.*` and `optout.*`: campaigns and the suppression list."""

from __future__ import annotations

from typing import Any

from wasupd.addressing import parse_recipient
from wasupd.campaigns.service import Campaigns
from wasupd.errors import InvalidArgument
from wasupd.messaging.media import MediaIntake
from wasupd.rpc.server import Context
from wasupd.store.campaigns import CampaignRepo
from wasupd.store.messages import MediaRef


class CampaignMethods:
    """Creating, controlling and reporting campaigns; opt-outs."""

    def __init__(
        self, *, campaigns: Campaigns, repo: CampaignRepo, intake: MediaIntake | None = None
    ) -> None:
        self.campaigns, self.repo, self.intake = campaigns, repo, intake

    async def create(
        self,
        ctx: Context,
        name: str,
        text: str,
        columns: list[str],
        numbers: list[str] | None = None,
        pin: bool = False,
        window: str = "",
        start: float | None = None,
        until: float | None = None,
        file: str | None = None,
        kind: str | None = None,
        filename: str = "",
    ) -> dict[str, Any]:
        """Create a campaign draft: `text` with `{column}` fields, the CSV header `columns`
        (must have `phone` and every field), the `numbers` to send from (omitted: every
        connected session), `pin` (a number that drops keeps its recipients), the local send
        `window` (`HH:MM-HH:MM`; default each number's `send.window`), `start` and `until`
        (unix times). Add recipients with `campaign.add`, then `campaign.start`. `file`,
        `kind`, `filename`: a file every recipient gets (a finished `media.upload`, checked as
        `message.send` checks it), `text` its caption."""
        if not name.strip() or len(name) > 100:
            raise InvalidArgument("the campaign name must be 1 to 100 characters")
        c = await self.campaigns.create(
            name=name,
            text=text,
            columns=columns,
            numbers=numbers or [],
            pin=pin,
            window=window,
            start=start,
            until=until,
            media=await self._take_file(file, kind, filename),
        )
        return c.as_dict()

    async def _take_file(
        self, file: str | None, kind: str | None, filename: str
    ) -> MediaRef | None:
        if file is None:
            return None
        if self.intake is None:
            raise InvalidArgument("this daemon takes no files")
        return await self.intake.accept(file, kind, filename)

    async def add(self, ctx: Context, name: str, rows: list[list[Any]]) -> dict[str, Any]:
        """Add a batch of a draft's recipients, each `[line, {column: value}]`; `errors` lists
        each bad row by its line (bad number, duplicate, empty field)."""
        for row in rows:
            if len(row) != 2 or not isinstance(row[0], int) or not isinstance(row[1], dict):
                raise InvalidArgument("each row must be [line, {column: value}]")
        return {"errors": await self.campaigns.add(name, rows)}

    async def discard(self, ctx: Context, name: str) -> dict[str, Any]:
        """Forget a draft whose recipients had errors (nothing of it was queued)."""
        await self.campaigns.discard(name)
        return {"discarded": name}

    async def start(self, ctx: Context, name: str, dry_run: bool = False) -> dict[str, Any]:
        """Plan the draft and queue every recipient (exactly once); returns the plan:
        recipients per number, first and last send time, days needed. `dry_run`: only the plan
        (the draft is forgotten). Refused when `until` cannot be met, saying what is missing."""
        return await self.campaigns.start(name, dry_run)

    async def listing(self, ctx: Context) -> list[dict[str, Any]]:
        """Every campaign, newest first, with its totals by state."""
        return [await self.campaigns.show(c.name) for c in await self.repo.listing()]

    async def get(self, ctx: Context, name: str) -> dict[str, Any]:
        """One campaign: counts by number and state (queued, sent, delivered, read, failed,
        cancelled, opted_out, replied) and the estimated finish."""
        return await self.campaigns.show(name)

    async def pause(self, ctx: Context, name: str) -> dict[str, Any]:
        """Pause a running campaign (messages already being sent finish)."""
        return (await self.campaigns.pause(name)).as_dict()

    async def resume(self, ctx: Context, name: str) -> dict[str, Any]:
        """Resume a paused campaign; its remaining schedule moves on by the pause."""
        return (await self.campaigns.resume(name)).as_dict()

    async def cancel(self, ctx: Context, name: str) -> dict[str, Any]:
        """Cancel a campaign: its queued messages are cancelled."""
        return (await self.campaigns.cancel(name)).as_dict()

    async def report(
        self, ctx: Context, name: str, after_line: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """One row per recipient in CSV order (page with `after_line`): number, state,
        planned/sent/delivered/read times, failure reason, replied."""
        c = await self.repo.get(name)
        return await self.repo.report(c.id, after_line, max(1, min(limit, 10000)))

    async def optout_list(
        self, ctx: Context, after: str = "", limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The suppression list in chat id order (page with `after`)."""
        return await self.repo.suppressions(after, max(1, min(limit, 10000)))

    async def optout_add(self, ctx: Context, contacts: list[str]) -> dict[str, Any]:
        """Put contacts (phone numbers or chat ids) on the suppression list; their queued
        campaign messages are cancelled."""
        chats = [parse_recipient(c) for c in contacts]  # all checked before any is added
        added = [c for c in chats if await self.campaigns.opt_out(c, "operator")]
        return {"added": added, "already": [c for c in chats if c not in added]}

    async def optout_rm(self, ctx: Context, contacts: list[str]) -> dict[str, Any]:
        """Take contacts off the suppression list."""
        chats = [parse_recipient(c) for c in contacts]
        removed = [c for c in chats if await self.repo.unsuppress(c)]
        return {"removed": removed, "unknown": [c for c in chats if c not in removed]}
