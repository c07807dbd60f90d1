"""Who is on the other end of the control socket (SO_PEERCRED), and whether they may talk to us.

Allowed by default: root, the daemon's own user, and members of the socket group; plus the
configured `daemon.allow_users` / `daemon.allow_groups`. Group membership is read from the
peer's supplementary groups in /proc, falling back to its primary gid.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PeerCred:
    """The peer's credentials as of connect()."""

    pid: int
    uid: int
    gid: int

    def groups(self) -> set[int]:
        """The peer's gid and supplementary groups (best effort: the pid may have exited)."""
        gids = {self.gid}
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("Groups:"):
                        gids.update(int(g) for g in line.split()[1:])
                        break
        return gids


def peer_cred(sock: socket.socket) -> PeerCred:
    """SO_PEERCRED of a connected AF_UNIX stream socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return PeerCred(pid, uid, gid)


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return int(name) if name.isdigit() else None


def gid_of(name: str) -> int | None:
    """The gid of group `name` (or a numeric string), None when there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return int(name) if name.isdigit() else None


class Authorizer:
    """Decides from SO_PEERCRED whether a peer may use the socket."""

    def __init__(
        self, *, socket_group: str, allow_users: Iterable[str], allow_groups: Iterable[str]
    ) -> None:
        self.uids = {0, os.getuid()}
        self.uids.update(u for u in map(_uid_of, allow_users) if u is not None)
        names = [socket_group, *allow_groups] if socket_group else list(allow_groups)
        self.gids = {g for g in map(gid_of, names) if g is not None}

    def allows(self, peer: PeerCred) -> bool:
        """True for root, our own uid, allowed users, and members of allowed groups."""
        if peer.uid in self.uids:
            return True
        return bool(self.gids & peer.groups())
