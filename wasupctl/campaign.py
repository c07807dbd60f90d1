"""`campaign create | list | show | watch | pause | resume | cancel | report`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from wasupctl import render
from wasupctl.common import call, die, emit_json, opts
from wasupd.errors import EXIT_USAGE

app = typer.Typer(no_args_is_help=True)
BATCH_ROWS = 2000  # rows per campaign.add: well under the 1 MiB message limit
BATCH_BYTES = 512 * 1024
SHOWN_ERRORS = 50


def parse_time(value: str | None, flag: str) -> float | None:
    """`HH:MM` (today, or tomorrow once past), `YYYY-MM-DD HH:MM`, ISO 8601, or unix time."""
    if value is None:
        return None
    v = value.strip()
    try:
        return float(v)
    except ValueError:
        pass
    try:
        if len(v) <= 5 and ":" in v:
            hh, mm = (int(x) for x in v.split(":"))
            now = dt.datetime.now()
            t = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
            return (t if t > now else t + dt.timedelta(days=1)).timestamp()
        return dt.datetime.fromisoformat(v).timestamp()
    except ValueError:
        die(f"{flag} {value!r}: give HH:MM, 'YYYY-MM-DD HH:MM' or a unix time", EXIT_USAGE)


def _open_csv(path: str) -> io.TextIOBase:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        die(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)


def _batches(reader: csv.DictReader[str]) -> Iterator[list[list[Any]]]:
    batch: list[list[Any]] = []
    size = 0
    try:
        for row in reader:
            batch.append([reader.line_num, {k: v for k, v in row.items() if k is not None}])
            size += sum(len(v or "") for v in row.values() if isinstance(v, str)) + 32
            if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    except UnicodeDecodeError:
        die(f"the CSV is not valid UTF-8 (near line {reader.line_num + 1})", EXIT_USAGE)
    except csv.Error as exc:
        die(f"the CSV is malformed at line {reader.line_num}: {exc}", EXIT_USAGE)
    if batch:
        yield batch


@app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the campaign's name")],
    recipients: Annotated[
        str, typer.Option("--recipients", help="CSV file with a phone column; - for stdin")
    ],
    text: Annotated[
        str | None, typer.Option("--text", help="the text, with {column} fields")
    ] = None,
    text_file: Annotated[
        Path | None, typer.Option("--text-file", help="read the text from a file")
    ] = None,
    from_: Annotated[str, typer.Option("--from", help="numbers s1,s2,... or 'auto'")] = "auto",
    pin: Annotated[
        bool, typer.Option("--pin", help="a dropped number keeps its recipients")
    ] = False,
    window: Annotated[str, typer.Option("--window", help="local send window HH:MM-HH:MM")] = "",
    start: Annotated[str | None, typer.Option("--start", help="when to begin")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="refuse a plan that ends later")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan, queue nothing")
    ] = False,
    file: Annotated[
        str | None,
        typer.Option("--file", help="a file every recipient gets; the text is its caption"),
    ] = None,
    as_: Annotated[
        str | None, typer.Option("--as", help="the file's kind (default: from its content)")
    ] = None,
    filename: Annotated[
        str | None, typer.Option("--filename", help="file name the recipients see")
    ] = None,
) -> None:
    """Check every row of the CSV, then queue one message per recipient, spread across the
    numbers and the window. Nothing is queued when any row is bad. With --file every
    recipient gets the file, with the text (optional) as its caption."""
    if (text is not None and text_file is not None) or (
        text is None and text_file is None and file is None
    ):
        die("give the text with --text or --text-file (one of them), or a --file", EXIT_USAGE)
    if file == "-" and recipients == "-":
        die("only one of --file and --recipients can read stdin", EXIT_USAGE)
    if file is None and (as_ is not None or filename is not None):
        die("--as and --filename go with --file", EXIT_USAGE)
    body = text if text is not None else (_read_text(text_file) if text_file else "")
    media_params: dict[str, Any] = {}
    if file is not None:
        from wasupctl import media

        media_params = {
            "file": media.upload(ctx, file),
            "filename": media.file_name(file, filename),
        }
        if as_:
            media_params["kind"] = as_
    numbers = [] if from_ == "auto" else [n.strip() for n in from_.split(",") if n.strip()]
    with _open_csv(recipients) as fh:
        reader = csv.DictReader(fh)
        try:
            columns = [c.strip() for c in (reader.fieldnames or [])]
        except UnicodeDecodeError:
            die("the CSV is not valid UTF-8", EXIT_USAGE)
        reader.fieldnames = columns
        call(
            ctx,
            "campaign.create",
            name=name,
            text=body,
            columns=columns,
            numbers=numbers,
            pin=pin,
            window=window,
            start=parse_time(start, "--start"),
            until=parse_time(until, "--until"),
            **media_params,
        )
        errors: list[str] = []
        for batch in _batches(reader):
            errors += call(ctx, "campaign.add", name=name, rows=batch)["errors"]
    if errors:
        call(ctx, "campaign.discard", name=name)
        for e in errors[:SHOWN_ERRORS]:
            print(f"wasupctl: {e}", file=sys.stderr)
        more = len(errors) - SHOWN_ERRORS
        tail = f" ({more} more not shown)" if more > 0 else ""
        die(
            f"{len(errors)} bad row(s){tail}; nothing was queued: fix the CSV and run again",
            EXIT_USAGE,
        )
    plan = call(ctx, "campaign.start", timeout=600.0, name=name, dry_run=dry_run)
    _print_plan(ctx, plan, dry_run)


def _read_text(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        die(f"cannot read --text-file {path}: {exc}", EXIT_USAGE)


def _print_plan(ctx: typer.Context, plan: dict[str, Any], dry_run: bool) -> None:
    if opts(ctx).json:
        emit_json(plan)
        return
    rows = [
        [n, p["count"], render.when(p["first"]), render.when(p["last"]), p["days"], p["capacity"]]
        for n, p in sorted(plan["numbers"].items())
    ]
    head = "plan (dry run: nothing queued)" if dry_run else f"campaign {plan['campaign']} queued"
    render.table(head, ["number", "recipients", "first send", "last send", "days", "per day"], rows)
    print(
        f"{plan['recipients']} recipients, {plan['opted_out']} opted out; "
        f"{render.when(plan['first'])} to {render.when(plan['last'])}, {plan['days']} day(s)"
    )


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """Every campaign with its state and totals."""
    data = call(ctx, "campaign.list")
    if opts(ctx).json:
        emit_json(data)
        return
    rows = [
        [
            c["name"],
            c["state"],
            sum(v for k, v in c["totals"].items() if k != "replied"),
            _totals(c["totals"]),
            render.when(c["finish"]),
        ]
        for c in data
    ]
    render.table(None, ["name", "state", "recipients", "progress", "finish"], rows)


def _totals(t: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(t.items()) if v) or "-"


@app.command()
def show(ctx: typer.Context, name: str) -> None:
    """Counts by number and state, and the estimated finish."""
    c = call(ctx, "campaign.get", name=name)
    if opts(ctx).json:
        emit_json(c)
        return
    states = [
        "queued",
        "sending",
        "sent",
        "delivered",
        "read",
        "failed",
        "cancelled",
        "opted_out",
        "replied",
    ]
    rows = [[n, *(v.get(s, 0) for s in states)] for n, v in sorted(c["numbers_used"].items())]
    render.table(f"campaign {c['name']}: {c['state']}", ["number", *states], rows)
    print(f"estimated finish: {render.when(c['finish'])}")


@app.command()
def pause(ctx: typer.Context, name: str) -> None:
    """Hold the campaign's queued messages."""
    _control(ctx, "campaign.pause", name)


@app.command()
def resume(ctx: typer.Context, name: str) -> None:
    """Continue a paused campaign; its schedule moves on by the pause."""
    _control(ctx, "campaign.resume", name)


@app.command()
def cancel(ctx: typer.Context, name: str) -> None:
    """Cancel every queued message of the campaign."""
    _control(ctx, "campaign.cancel", name)


def _control(ctx: typer.Context, method: str, name: str) -> None:
    c = call(ctx, method, name=name)
    if opts(ctx).json:
        emit_json(c)
    else:
        print(f"campaign {c['name']}: {c['state']}")


REPORT_COLUMNS = [
    "line",
    "phone",
    "session",
    "state",
    "planned_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failure",
    "replied_at",
    "handed_over",
]


@app.command()
def report(
    ctx: typer.Context,
    name: str,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout")] = False,
) -> None:
    """One row per recipient: number used, state, times, failure reason, replied."""
    writer = csv.writer(sys.stdout) if as_csv else None
    if writer:
        writer.writerow(REPORT_COLUMNS)
    rows: list[list[Any]] = []
    after = 0
    while page := call(ctx, "campaign.report", name=name, after_line=after, limit=5000):
        for r in page:
            if writer:
                writer.writerow([r[k] if r[k] is not None else "" for k in REPORT_COLUMNS])
            else:
                rows.append(
                    [
                        r["line"],
                        r["phone"],
                        r["session"] or "-",
                        r["state"],
                        render.when(r["sent_at"]),
                        r["failure"],
                        "yes" if r["replied_at"] else "",
                    ]
                )
        after = page[-1]["line"]
    if not writer:
        if opts(ctx).json:
            emit_json(rows)
            return
        render.table(
            f"campaign {name}",
            ["line", "phone", "number", "state", "sent", "failure", "replied"],
            rows,
        )


@app.command()
def watch(
    ctx: typer.Context,
    name: str,
    interval: Annotated[float, typer.Option(help="seconds between updates")] = 1.0,
) -> None:
    """A live progress bar per number until the campaign ends (Ctrl-C leaves it running)."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    done_states = ("sent", "delivered", "read", "failed", "cancelled", "opted_out")
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
    ) as progress:
        tasks: dict[str, Any] = {}
        while True:
            c = call(ctx, "campaign.get", name=name)
            for number, counts in sorted(c["numbers_used"].items()):
                total = sum(v for k, v in counts.items() if k != "replied")
                done = sum(counts.get(s, 0) for s in done_states)
                detail = f"{counts.get('failed', 0)} failed, {counts.get('replied', 0)} replied"
                if number not in tasks:
                    tasks[number] = progress.add_task(number, total=total, detail=detail)
                progress.update(tasks[number], completed=done, total=total, detail=detail)
            if c["state"] in ("finished", "cancelled"):
                break
            time.sleep(interval)  # a display refresh, not a synchronisation
    print(f"campaign {name}: {c['state']}")
