"""Run a command under the seccomp filter that the unit's RestrictNamespaces=user pid net and
SystemCallArchitectures=native install (x86-64), then exec it.

    python tests/helpers/unit_sandbox.py COMMAND [ARG...]

What systemd's filter does, and so this one: creating or joining a mount, UTS, IPC or cgroup
namespace (clone, unshare, setns) fails with EPERM, user/pid/net namespaces are allowed,
clone3 fails with ENOSYS (its flags are out of a filter's reach, so libc falls back to clone),
and a system call of another ABI (i386, x32) kills the process. The caller must already have
no_new_privs set (setpriv --no-new-privs), as under NoNewPrivileges=yes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
NR = {"clone": 56, "unshare": 272, "setns": 308, "clone3": 435}
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWTIME = 0x80  # only a namespace flag for unshare/setns; for clone it is the exit signal
FORBIDDEN = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC

LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, KILL = 0x7FFF0000, 0x80000000
ERRNO = 0x00050000
OFF_NR, OFF_ARCH, OFF_ARG0, OFF_ARG1 = 0, 4, 16, 24  # struct seccomp_data, low words

PROGRAM: list[tuple[str | None, int, str | None, str | None, int]] = [
    # (label, code, jump-if-true label, jump-if-false label, k); None means the next insn
    (None, LD_ABS, None, None, OFF_ARCH),
    (None, JEQ, None, "kill", AUDIT_ARCH_X86_64),
    (None, LD_ABS, None, None, OFF_NR),
    (None, JGE, "kill", None, X32_SYSCALL_BIT),
    (None, JEQ, "enosys", None, NR["clone3"]),
    (None, JEQ, "clone", None, NR["clone"]),
    (None, JEQ, "unshare", None, NR["unshare"]),
    (None, JEQ, "setns", None, NR["setns"]),
    (None, RET, None, None, ALLOW),
    ("clone", LD_ABS, None, None, OFF_ARG0),
    (None, JSET, "eperm", "allow", FORBIDDEN),
    ("unshare", LD_ABS, None, None, OFF_ARG0),
    (None, JSET, "eperm", "allow", FORBIDDEN | CLONE_NEWTIME),
    ("setns", LD_ABS, None, None, OFF_ARG1),
    (None, JEQ, "eperm", None, 0),  # nstype 0 joins whatever the fd is: refused
    (None, JSET, "eperm", "allow", FORBIDDEN | CLONE_NEWTIME),
    ("allow", RET, None, None, ALLOW),
    ("eperm", RET, None, None, ERRNO | errno.EPERM),
    ("enosys", RET, None, None, ERRNO | errno.ENOSYS),
    ("kill", RET, None, None, KILL),
]


def assemble() -> bytes:
    """The classic BPF program, jumps resolved to relative offsets."""
    where = {label: i for i, (label, *_) in enumerate(PROGRAM) if label}
    out = b""
    for i, (_, code, jt, jf, k) in enumerate(PROGRAM):
        rel_t = where[jt] - i - 1 if jt else 0
        rel_f = where[jf] - i - 1 if jf else 0
        out += struct.pack("=HBBI", code, rel_t, rel_f, k)
    return out


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Load the filter into this process (inherited across fork and exec)."""
    code = assemble()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_seccomp, seccomp_mode_filter = 22, 2
    if libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) (is no_new_privs set?)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: unit_sandbox.py COMMAND [ARG...]")
    install()
    os.execvp(sys.argv[1], sys.argv[1:])
