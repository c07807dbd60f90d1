"""The `wasupctl` root: global options, sub-apps, and the entry point.

Every command parses, calls the daemon through `common.call`, renders a table or `--json`, and
leaves through the one error path in `common.fail` (error class -> exit status).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from wasupctl import campaign, contacts, daemon_cmds, host, media, messages, optout, qr, session
from wasupctl.common import Options, default_socket

app = typer.Typer(
    name="wasupctl",
    help="Control wasupd: sessions, QR login, messages and health of many WhatsApp accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    socket: Annotated[
        Path | None,
        typer.Option(
            "--socket", envvar="WASUP_SOCKET", help="control socket [default: the daemon's]"
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds to wait for the daemon")
    ] = 30.0,
) -> None:
    """Control wasupd over its Unix socket."""
    ctx.obj = Options(socket=socket or default_socket(), json=json, timeout=timeout)


app.add_typer(session.app, name="session", help="Create, inspect and control sessions.")
app.add_typer(session.profiles_app, name="profiles", help="Sealed profile archives (key rotation).")
app.add_typer(campaign.app, name="campaign", help="One message to many contacts, paced.")
app.add_typer(optout.app, name="optout", help="The opt-out suppression list.")
app.add_typer(media.app, name="media", help="Files of messages sent and received.")
app.add_typer(host.app, name="host", help="The hosts of a fleet on one PostgreSQL.")
daemon_cmds.register(app)
qr.register(app)
messages.register(app)
contacts.register(app)


def main() -> None:
    """Console script `wasupctl`."""
    try:
        app()
    except BrokenPipeError:  # `wasupctl events --follow | head`
        sys.stderr.close()
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
