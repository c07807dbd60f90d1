"""The text template and the recipients' rows: what is checked before anything is queued.

The template uses `{column}` fields of the CSV (`{{` and `}}` for literal braces). A row is
good when its `phone` is a number WhatsApp can address and every column the template uses has a
value; each error names its CSV line.
"""

from __future__ import annotations

import string
from typing import Any

from wasupd.addressing import parse_recipient
from wasupd.errors import InvalidArgument
from wasupd.store.campaigns import Row

PHONE = "phone"
MAX_ERRORS = 100  # per batch: enough to fix a file, not a megabyte of the same mistake


def fields(template: str) -> list[str]:
    """The columns a template uses; InvalidArgument for anything but plain `{name}` fields."""
    if not template.strip():
        raise InvalidArgument("the campaign text is empty: give --text or --text-file")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidArgument(
            f"the campaign text is not a valid template ({exc}); write {{column}} for a CSV"
            " column and {{{{ }}}} for literal braces"
        ) from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise InvalidArgument(
                f"template field {{{name}}} is not a plain column name: write {{column}}"
            )
        names.append(name)
    return sorted(set(names))


def check_columns(columns: list[str], used: list[str]) -> None:
    """The header must have `phone` and every column the template uses."""
    if PHONE not in columns:
        raise InvalidArgument(
            f"the CSV header has no {PHONE!r} column (it has: {', '.join(columns) or 'nothing'})"
        )
    missing = [c for c in used if c not in columns]
    if missing:
        raise InvalidArgument(
            f"the text uses {', '.join('{' + c + '}' for c in missing)} but the CSV header has"
            f" no such column (it has: {', '.join(columns)})"
        )


def check_row(line: int, values: dict[str, Any], used: list[str]) -> Row | str:
    """The stored row, or the error for this line."""
    phone = str(values.get(PHONE) or "").strip()
    if not phone:
        return f"line {line}: the phone is empty"
    try:
        chat = parse_recipient(phone)
    except InvalidArgument as exc:
        return f"line {line}: {exc.message}"
    if chat.endswith("@g.us"):
        return f"line {line}: {phone!r} is a group; a campaign writes to people"
    empty = [c for c in used if not str(values.get(c) or "").strip()]
    if empty:
        return f"line {line}: no value for {', '.join('{' + c + '}' for c in empty)}"
    kept = {c: str(values[c]) for c in used}
    return Row(line, chat, phone, kept)


def render(template: str, values: dict[str, str], phone: str) -> str:
    """The text for one recipient."""
    return template.format_map({PHONE: phone, **values})
