"""How one account's pages name other accounts: by LID or by number (§4e).

The rules (docs/simulator.md, "LIDs"):
- a migrated account's pages key 1:1 chats by `<lid>@lid`: inbound messages come from the
  sender's LID, and the page's own messages there are from its own LID;
- an old-world account's pages (`lid=False`) see numbers only, as before LIDs;
- in a group in LID addressing mode, a migrated account's pages name members and authors by
  LID; otherwise by number;
- a page learns LID <-> number pairs from what it is shown (chats, messages, queries), except
  for accounts that hide their number: their number is never shown next to their LID.
"""

from __future__ import annotations

from wasupd.sim.model import Account, Group


def user_id(acc: Account, viewer: Account) -> str:
    """`acc` in a 1:1 chat on `viewer`'s pages."""
    return acc.lid if viewer.migrated else acc.wid


def member_id(acc: Account, viewer: Account, group: Group | None) -> str:
    """`acc` as a group member or author on `viewer`'s pages."""
    return acc.lid if viewer.migrated and group is not None and group.lid_mode else acc.wid


def pair(acc: Account, viewer: Account) -> list[str | None]:
    """The `[lid, number]` pair `viewer`'s pages may learn about `acc` (number None when
    `acc` hides it from others); old-world pages learn nothing (they have no LIDs)."""
    if not viewer.migrated:
        return []
    shown = acc.wid if acc is viewer or not acc.hides_number else None
    return [acc.lid, shown]


def exists_answer(acc: Account | None, viewer: Account, asked: str) -> dict[str, str | None]:
    """`queryWidExists(asked)` on `viewer`'s page: the wid asked, with its LID and number as
    far as the viewer may know them (asking by number teaches that number's LID)."""
    if acc is None:
        return {"wid": None, "lid": None, "pn": None}
    by_lid = asked.endswith("@lid")
    lid, pn = (pair(acc, viewer) or [None, None]) if by_lid else [acc.lid, acc.wid]
    if not viewer.migrated:
        lid = None
    return {"wid": acc.lid if by_lid else acc.wid, "lid": lid, "pn": pn if by_lid else acc.wid}
