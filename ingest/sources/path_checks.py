"""Checks on a path before anything of it is opened: where it really leads and what kind of file it is.

Every input reached through a path the user gives (an argument, a file inside a given folder) is judged
from ``os.stat`` and ``os.path.realpath`` alone, which read no file contents: files under /proc, /sys and
/dev, named pipes, sockets and devices are refused before any ``open``. A file of those file systems
mounted elsewhere (a bind mount) has an ordinary path; its device number (``st_dev``) still names the
file system, so it is refused too (``special_device``). A file is then opened with
``open_regular``, which re-checks the opened descriptor (the path may have been swapped between the
check and the open) and never blocks on a pipe.

Paths in messages go through ``names.shown_name`` (undecodable bytes shown as ``\\xNN``).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from typing import BinaryIO

from .errors import SourceError, SourceNotFoundError, UnsupportedSourceError
from .names import shown_name

SPECIAL_ROOTS = ("/proc", "/sys", "/dev")
"""Kernel and device file systems: their "files" are live views (environments, memory, devices), not
documents, and reading some of them blocks or has side effects."""


def special_root(real: str) -> str | None:
    """The kernel or device file system (/proc, /sys, /dev) that the resolved path ``real`` lies in."""
    for root in SPECIAL_ROOTS:
        if real == root or real.startswith(root + "/"):
            return root
    return None


@functools.cache
def _special_devices() -> dict[int, str]:
    """``st_dev`` -> root for each of /proc, /sys and /dev that is a file system of its own (a mount point,
    not a plain folder of the root file system, which would make every file of it special). Read once."""
    try:
        root_device = os.stat("/").st_dev
    except OSError:
        return {}
    devices: dict[int, str] = {}
    for root in SPECIAL_ROOTS:
        try:
            device = os.stat(root).st_dev
        except OSError:
            continue
        if device != root_device:
            devices.setdefault(device, root)
    return devices


def special_device(info: os.stat_result) -> str | None:
    """The kernel or device file system (/proc, /sys, /dev) that the file of ``info`` is on, wherever it is
    mounted (a bind mount gives such a file an ordinary path), or None. One dict look-up."""
    return _special_devices().get(info.st_dev)


def file_type(mode: int) -> str:
    """What a non-regular, non-folder ``st_mode`` is, in words."""
    for test, label in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"),
                        (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                        (stat.S_ISLNK, "symlink")):
        if test(mode):
            return label
    return "special file"


def check_input_path(path: str | os.PathLike[str]) -> os.stat_result:
    """Judge a path the user gave, without opening it; returns its ``stat`` (symlinks followed).

    Refuses (SourceError naming the path): a missing path or broken symlink, a symlink loop, a path
    that resolves into /proc, /sys or /dev or whose file system is one of them, anything that is neither
    a regular file nor a folder, and a regular file written with a trailing slash (the user meant a folder).
    """
    raw = os.fspath(path)
    shown = shown_name(raw)
    try:
        info = os.stat(raw)
    except FileNotFoundError:
        if os.path.islink(raw):
            raise SourceNotFoundError(shown, f"broken symlink (-> {shown_name(os.readlink(raw))})") from None
        raise SourceNotFoundError(shown, "no such file or folder") from None
    except NotADirectoryError:
        if raw.endswith(("/", os.sep)) and os.path.isfile(raw.rstrip("/" + os.sep)):
            raise UnsupportedSourceError(shown, "not a folder (a regular file written with a trailing "
                                                "slash); drop the slash to read the file") from None
        raise SourceNotFoundError(shown, "no such file or folder (a part of the path is not a folder)") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SourceError(shown, "symlink loop: the path resolves to itself") from None
        if isinstance(error, PermissionError):
            raise SourceError(shown, "permission denied") from None
        raise SourceError(shown, f"cannot be opened ({error.strerror or error})") from None
    real = os.path.realpath(raw)
    root = special_root(real)
    if root is not None:
        target = "" if real == os.path.abspath(raw) else f" (it resolves to {shown_name(real)})"
        raise UnsupportedSourceError(shown, f"a file of the kernel or device file system {root}{target}, "
                                            "not a document; refused without reading it")
    mounted = special_device(info)
    if mounted is not None:
        raise UnsupportedSourceError(shown, f"a file of the kernel or device file system {mounted} (mounted here), "
                                            "not a document; refused without reading it")
    if stat.S_ISDIR(info.st_mode):
        return info
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedSourceError(shown, f"a {file_type(info.st_mode)}, not a regular file or folder; "
                                            "refused without reading it")
    if raw.endswith(("/", os.sep)):  # Linux refuses "file/" already; kept for systems that do not
        raise UnsupportedSourceError(shown, "not a folder (a regular file written with a trailing slash); "
                                            "drop the slash to read the file")
    return info


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> int:
    """Open ``path`` read-only and return the descriptor, only if it is a regular file.

    O_NONBLOCK keeps a named pipe swapped in after a check from blocking the open; the descriptor is
    checked with ``fstat`` and switched back to blocking reads. With ``follow_symlinks=False`` a symlink
    at the last component is refused (ELOOP) instead of followed. Raises OSError.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file ({file_type(info.st_mode)})")
        mounted = special_device(info)
        if mounted is not None:
            raise OSError(errno.EINVAL, f"a file of the kernel or device file system {mounted}, not a document")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file opened with ``open_regular``."""
    with open_binary(path, follow_symlinks=follow_symlinks) as handle:
        return handle.read()


def open_binary(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> BinaryIO:
    """A buffered binary file object over ``open_regular``."""
    return os.fdopen(open_regular(path, follow_symlinks=follow_symlinks), "rb")
