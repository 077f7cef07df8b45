"""Run a command under a seccomp allow-list, as systemd's SystemCallFilter= with SystemCallErrorNumber= does.

Usage: python seccomp_exec.py SYSCALL_LIST_FILE ERRNO -- COMMAND...
The file names the allowed system calls one a line; any other call fails with ERRNO. Needs libseccomp and
no_new_privs (or CAP_SYS_ADMIN). Exits 3 when the filter does not hold (sched_setaffinity must then fail).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000


def load_filter(allowed: list[str], errno: int) -> None:
    """Install the filter for this process and what it executes; native architecture only."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"), use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    context = lib.seccomp_init(SCMP_ACT_ERRNO | errno)
    for name in allowed:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number >= 0:  # calls this architecture does not have resolve to a negative number
            lib.seccomp_rule_add(context, SCMP_ACT_ALLOW, number, 0)
    if lib.seccomp_load(context) != 0:
        raise OSError(ctypes.get_errno(), "seccomp_load failed")


def main(argv: list[str]) -> int:
    listing, errno, separator, *command = argv
    assert separator == "--" and command, __doc__
    allowed = open(listing).read().split()
    load_filter(allowed, int(errno))
    if "sched_setaffinity" not in allowed:
        try:
            os.sched_setaffinity(0, os.sched_getaffinity(0))
        except OSError as error:
            if error.errno != int(errno):
                raise
        else:
            print("seccomp_exec: the filter does not hold", file=sys.stderr)
            return 3
    os.execv(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
