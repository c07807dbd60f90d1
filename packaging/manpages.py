"""Write wasupd.1 and wasupctl.1 from the commands' own help (argparse and typer/click), so the
man pages say what `--help` says and are never written twice.

    python packaging/manpages.py OUTDIR

Run with the interpreter of the installed application (the package build uses the staged venv).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from wasupctl.app import app as wasupctl_app
from wasupd import __version__

# The daemon has no public accessor for its parser; this is the one place outside
# wasupd/daemon.py that reads it.
from wasupd.daemon import _parser as wasupd_parser

SEE_ALSO = ".SH SEE ALSO\n/usr/share/doc/wasupd/README.md, /usr/share/doc/wasupd/docs/\n"


def esc(text: str) -> str:
    """Text safe for roff: backslashes and hyphens escaped, no line starting with a control char."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + ln if ln[:1] in ".'" else ln for ln in text.splitlines())


def header(name: str, summary: str) -> str:
    """The title line and NAME section."""
    return (
        f'.TH {name.upper()} 1 "" "{name} {__version__}" "User Commands"\n'
        f".SH NAME\n{name} \\- {esc(summary)}\n"
    )


def option(flags: str, text: str) -> str:
    """One tagged paragraph for an option or argument."""
    return f".TP\n.B {esc(flags)}\n{esc(text or '')}\n"


def argparse_options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """(flags, help) of every option and positional of `parser`, help excluded."""
    for action in parser._actions:  # argparse keeps them here; there is no public list
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        flags = ", ".join(action.option_strings) or (action.metavar or action.dest)
        yield str(flags), action.help or ""


def wasupd_page() -> str:
    """wasupd.1: usage, options, then one section per sub-command."""
    p = wasupd_parser()
    out = [header("wasupd", p.description or "")]
    out.append(f".SH SYNOPSIS\n.nf\n{esc(p.format_usage().removeprefix('usage: '))}\n.fi\n")
    out.append(".SH OPTIONS\n" + "".join(option(f, h) for f, h in argparse_options(p)))
    subs = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in subs._choices_actions}
    out.append(".SH COMMANDS\n")
    for name, sub in subs.choices.items():
        out.append(f".SS {esc(name)}\n{esc(helps.get(name, ''))}\n.PP\n")
        out.append(f".nf\n{esc(sub.format_usage().removeprefix('usage: '))}\n.fi\n")
        out.extend(option(f, h) for f, h in argparse_options(sub))
    out.append(SEE_ALSO)
    return "".join(out)


# typer's commands are click commands (typer vendors its click), typed loosely here.
def click_params(cmd: Any, ctx: Any) -> Iterator[tuple[str, str]]:
    """(flags, help) of a command's parameters, as its --help lists them."""
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is not None:
            yield record
        elif param.param_type_name == "argument":
            yield param.make_metavar(ctx), ""


def is_group(cmd: Any) -> bool:
    """Whether `cmd` has sub-commands."""
    return hasattr(cmd, "list_commands")


def click_commands(cmd: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """Every command below `cmd`, depth first, with its context (for usage lines)."""
    if not is_group(cmd):
        return
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
        yield sub, sub_ctx
        yield from click_commands(sub, sub_ctx)


def wasupctl_page() -> str:
    """wasupctl.1: global options, then one section per command with its usage and options."""
    root = typer.main.get_command(wasupctl_app)
    ctx = root.context_class(root, info_name="wasupctl")
    out = [header("wasupctl", (root.help or "").strip().splitlines()[0])]
    out.append(".SH SYNOPSIS\n.B wasupctl\n[OPTIONS] COMMAND [ARGS]...\n")
    out.append(".SH OPTIONS\n" + "".join(option(f, h) for f, h in click_params(root, ctx)))
    out.append(".SH COMMANDS\n")
    for cmd, cctx in click_commands(root, ctx):
        path = cctx.command_path
        out.append(f".SS {esc(path.removeprefix('wasupctl '))}\n")
        out.append(f"{esc(' '.join((cmd.help or cmd.short_help or '').split()))}\n.PP\n")
        out.append(f".nf\n{esc(path + ' ' + ' '.join(cmd.collect_usage_pieces(cctx)))}\n.fi\n")
        if not is_group(cmd):
            out.extend(option(f, h) for f, h in click_params(cmd, cctx) if not f.endswith("--help"))
    out.append(
        ".SH EXIT STATUS\n0 on success; the other statuses are listed in"
        " /usr/share/doc/wasupd/docs/cli.md.\n" + SEE_ALSO
    )
    return "".join(out)


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: manpages.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    (out / "wasupd.1").write_text(wasupd_page())
    (out / "wasupctl.1").write_text(wasupctl_page())
    return 0


if __name__ == "__main__":
    sys.exit(main())
