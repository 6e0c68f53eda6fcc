"""CPU time, memory and children of processes, read straight from /proc."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses; the rest follows the last ")".
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = _stat_fields(pid)
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def preemptions(pid: int) -> int:
    """Times the process (its main thread) was switched out while it could still run."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise ValueError(f"/proc/{pid}/status has no nonvoluntary_ctxt_switches")


def rss_bytes(pid: int) -> int:
    """Resident set size of the process."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_SIZE


def _live_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every process still there when it is read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), _stat_fields(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue


def children(pid: int) -> list[int]:
    """Direct children of a process, oldest first."""
    found = [(int(f[19]), child) for child, f in _live_stats() if int(f[1]) == pid]
    return [child for _, child in sorted(found)]  # sorted by start time


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    return [pid for pid, f in _live_stats() if int(f[2]) == pgid and f[0] != "Z"]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    result: list[int] = []
    queue = [pid]
    while queue:
        for child in children(queue.pop()):
            result.append(child)
            queue.append(child)
    return result


def per_process(pids: Iterable[int], read: Callable[[int], _T]) -> dict[int, _T]:
    """`read(pid)` for each process, leaving out those that exited meanwhile."""
    result = {}
    for pid in pids:
        try:
            result[pid] = read(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return result


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def maps_text(pid: int) -> str:
    """The process's memory maps (the shared libraries it loaded), "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


MIB = 2**20


def rss_by_pid(pids: Iterable[int]) -> dict[int, int]:
    """Resident set size of each process still there."""
    return per_process(pids, rss_bytes)


TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def tcp_socket_inodes(port: int, state: str) -> set[str]:
    """Socket inodes of the TCP sockets (IPv4 and IPv6) whose local port is `port` and
    whose state is `state` (`TCP_LISTEN`, `TCP_ESTABLISHED`), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            fields = row.split()
            if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets the process holds open; empty once it is gone."""
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
    except OSError:
        pass
    return found


def accepting(pid: int, port: int) -> bool:
    """True when the process's event loop watches a listening socket on `port`: one of
    its epoll instances holds that socket. A worker may hold a listening socket (its
    master's, or its own `SO_REUSEPORT` one) before it serves; it watches one only once
    it has started serving."""
    listeners = {f"socket:[{inode}]" for inode in tcp_socket_inodes(port, TCP_LISTEN)}
    watched: set[int] = set()
    polls: list[str] = []
    try:
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            target = str(entry.readlink())
            if target in listeners:
                watched.add(int(entry.name))
            elif target == "anon_inode:[eventpoll]":
                polls.append(entry.name)
        for poll in polls:
            # One `tfd: <fd> events: ...` line per file descriptor the instance watches.
            for line in Path(f"/proc/{pid}/fdinfo/{poll}").read_text().splitlines():
                if line.startswith("tfd:") and int(line.split()[1]) in watched:
                    return True
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False
