"""The study lock: one `scaling run` per results folder at a time.

Two drivers on one folder would run the same trials twice and race on their rows. The lock is
`<results>/_lock`, created exclusively by a hard link (atomic on POSIX and NFS), holding the
holder's pid, host and start time. A lock whose holder is a dead pid on this host is stale (the driver
crashed) and is taken over; a lock held from another host cannot be checked from here, so the
error says who holds it and which file to delete once that driver is known to be gone.
On object stores (s3://, gs://) there is no exclusive create: the check is best effort.

A driver SIGKILLed while its own local Ray runs leaves some of that Ray behind (measured on Ray
2.60: the trial workers exit within seconds, the raylet's DashboardAgent and RuntimeEnvAgent
stay, re-parented to init). They do not stop a new `ray.init`, but a straggling worker could
still write a row after the next run started. So the holder records its local Ray (node id,
the pids it launched with their start times) in the lock, and whoever takes over a stale lock
first ends exactly those processes: the recorded pids whose start time still matches, and
processes whose environment carries that node's RAY_NODE_ID (workers and agents); a node id is
unique, so no other Ray on the host is touched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

from scaling_orchestrator.orchestrator.store.results import Store


class StudyLockedError(OSError):
    """Another live driver holds the results folder: an OSError, like the EBUSY of a file
    lock, so the CLI reports it as one line with exit code 2."""


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): with the pid, a process's
    identity (a pid alone may have been reused)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def local_ray_processes(node_id: str, pids: list[int]) -> dict:
    """What a lock holder records about the local Ray it started (see the module doc)."""
    return {"ray_node_id": node_id,
            "ray_pids": [[pid, _start_time(pid)] for pid in pids if _start_time(pid)]}


def node_processes(node_id: str) -> list[int]:
    """Our processes whose environment has RAY_NODE_ID=node_id (Linux /proc; [] elsewhere)."""
    needle = f"RAY_NODE_ID={node_id}".encode()
    found = []
    for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and int(name) != os.getpid():
                    found.append(int(name))
        except (OSError, ValueError):
            continue
    return found


def reap_leftover_ray(holder: dict) -> list[int]:
    """SIGKILL what a dead holder's own local Ray left running; returns the pids signalled."""
    targets = [int(pid) for pid, start in holder.get("ray_pids", []) if _start_time(pid) == start]
    if holder.get("ray_node_id"):
        targets += node_processes(str(holder["ray_node_id"]))
    killed = []
    for pid in sorted(set(targets)):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    return killed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class StudyLock:
    def __init__(self, store: Store):
        self.store = store
        self.path = store.path("_lock")
        self.me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self.took_over: dict | None = None  # the stale holder replaced by acquire, if any

    def _holder(self) -> dict | None:
        return self.store.read_json(self.path)

    def _refuse(self, holder: dict) -> None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
        raise StudyLockedError(
            f"results folder {self.store.uri} is in use by pid {holder.get('pid')} on host "
            f"{holder.get('host')} (since {since}); wait for that run to finish, or delete "
            f"{self.path} if that process is gone")

    def check(self) -> None:
        """Refuse early, taking nothing, when a live driver holds the lock (acquire decides)."""
        holder = self._holder()
        if holder and holder != self.me and not (
                holder.get("host") == self.me["host"] and not _pid_alive(int(holder["pid"]))):
            self._refuse(holder)

    def record(self, **fields) -> None:
        """Add fields (e.g. local_ray_processes) to the lock we hold; atomic replace."""
        self.me = {**self.me, **fields}
        self.store.write_json(self.path, self.me)

    def acquire(self) -> StudyLock:
        self.store.fs.create_dir(self.store.root, recursive=True)
        blob = json.dumps(self.me).encode()
        if not self.store.local:
            holder = self._holder()
            if holder and holder != self.me:
                self._refuse(holder)
            self.store.write_bytes(self.path, blob)
            return self
        for _ in range(3):  # retry after removing a stale lock (another taker may race us)
            try:
                self._create(blob)
            except FileExistsError:
                holder = self._holder()
                if holder is None:  # released between our open and read
                    continue
                if holder.get("host") == self.me["host"] and not _pid_alive(int(holder["pid"])):
                    stale = self.path + f".stale-{os.getpid()}"
                    try:  # rename first: of two racing takers only one moves the stale file
                        os.replace(self.path, stale)
                        os.remove(stale)
                    except FileNotFoundError:
                        continue
                    self.took_over = {**holder, "reaped": reap_leftover_ray(holder)}
                    continue
                self._refuse(holder)
            else:
                return self
        raise StudyLockedError(f"could not take the study lock {self.path} after 3 tries")

    def _create(self, blob: bytes) -> None:
        """Exclusive create with the content already in: write a private file, then link it to
        the lock's name (link fails if the name exists; atomic on POSIX and NFS). An O_EXCL
        create followed by a write would let a reader see an empty lock in between."""
        tmp = f"{self.path}.{os.getpid()}-{time.monotonic_ns()}.tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        try:
            os.link(tmp, self.path)
        finally:
            os.remove(tmp)

    def release(self) -> None:
        holder = self._holder()
        if holder and holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
            self.store.fs.delete_file(self.path)

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
