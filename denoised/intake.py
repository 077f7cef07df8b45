"""Finding complete files in the inbox (start-up sweep, watchdog events, the settle rule) and claiming them."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from denoised.claims import Claim, WorkArea, inbox_files, is_candidate

log = logging.getLogger("denoised")
SWEEP_SECONDS = 60.0  # INBOX is swept this often too, for files whose events were lost (watch limit, queue overflow)


def signature(path: Path) -> tuple | None:
    """What changes while a file is written: size, mtime, inode, type; None when it is gone."""
    try:
        status = os.lstat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino, status.st_mode


class Settler:
    """Decides when an inbox file is complete.

    A file is complete at once after its close-write event or when it is renamed into the inbox (from a
    temporary name or another folder); any other file (found by the sweep, seen created or modified, or
    watched by polling) once its size and mtime have not changed for `settle` seconds. Thread-safe: the
    watchdog thread reports, intake asks.
    """

    def __init__(self, settle: float):
        self.settle = settle
        self._lock = threading.Lock()
        self._complete: dict[Path, None] = {}
        self._waiting: dict[Path, tuple[tuple | None, float]] = {}
        self._changed = threading.Event()

    def complete(self, path: Path) -> None:
        """The writer is done with this file (close-write, or renamed into place)."""
        with self._lock:
            self._waiting.pop(path, None)
            self._complete[path] = None
        self._changed.set()

    def maybe(self, path: Path) -> None:
        """This file may still be written: take it once it has settled."""
        with self._lock:
            if path not in self._complete and path not in self._waiting:
                self._waiting[path] = (None, 0.0)
        self._changed.set()

    def due(self) -> list[Path]:
        """Files complete or settled since the last call, forgetting ones that are gone."""
        with self._lock:
            due, waiting = list(self._complete), list(self._waiting.items())
            self._complete.clear()
        now = time.monotonic()
        for path, (seen, since) in waiting:
            if seen is not None and now - since < self.settle:
                continue  # looked at again once `settle` seconds have passed: one stat per file and period
            current = signature(path)
            with self._lock:
                if path not in self._waiting:
                    continue
                if current is None:
                    del self._waiting[path]
                elif current != seen:
                    self._waiting[path] = (current, now)
                elif now - since >= self.settle:
                    del self._waiting[path]
                    due.append(path)
        return due

    def __len__(self) -> int:
        with self._lock:
            return len(self._complete) + len(self._waiting)

    def wait(self, timeout: float) -> None:
        """Sleep until something is reported or `timeout` seconds pass."""
        self._changed.wait(timeout)
        self._changed.clear()

    def wake(self) -> None:
        self._changed.set()


class InboxEvents(FileSystemEventHandler):
    """Reports watchdog events on candidate files to the settler; new or moved-in folders are swept."""

    def __init__(self, inbox: Path, recursive: bool, settler: Settler):
        self.inbox, self.recursive, self.settler = inbox, recursive, settler

    def on_closed(self, event: FileSystemEvent) -> None:
        self._report(event.src_path, self.settler.complete)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.dest_path:
            return  # moved out of the inbox
        if event.is_directory:
            self._sweep(Path(os.fsdecode(event.dest_path)))
        else:
            self._report(event.dest_path, self.settler.complete)

    def on_created(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            self._sweep(Path(os.fsdecode(event.src_path)))
        else:
            self._report(event.src_path, self.settler.maybe)

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._report(event.src_path, self.settler.maybe)

    def _report(self, raw_path: str | bytes, report) -> None:
        path = Path(os.fsdecode(raw_path))
        if is_candidate(self.inbox, path, self.recursive):
            report(path)

    def _sweep(self, folder: Path) -> None:
        if self.recursive and is_candidate(self.inbox, folder, True):
            for path in inbox_files(self.inbox, folder, True):
                self.settler.maybe(path)


def native_observer() -> BaseObserver:
    """inotify reporting files moved in from outside the inbox as moves (so they count as complete)."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        return Observer()
    return InotifyObserver(generate_full_events=True)


def start_observer(inbox: Path, handler: FileSystemEventHandler, recursive: bool, polling: bool) -> BaseObserver:
    """Start watching the inbox (inotify, or polling every second); watchdog's threads are named denoise-watch*."""
    before = set(threading.enumerate())
    observer = PollingObserver(timeout=1.0) if polling else native_observer()
    observer.schedule(handler, str(inbox), recursive=recursive)
    observer.name = "denoise-watch"
    for emitter in observer.emitters:
        emitter.name = "denoise-watch-emitter"
    observer.start()
    for thread in set(threading.enumerate()) - before:
        if type(thread).__module__.startswith("watchdog.") and not thread.name.startswith("denoise"):
            thread.name = "denoise-watch-reader"
    return observer


class Intake(threading.Thread):
    """Claims complete inbox files and queues them: leftovers of an earlier run first, then what events and a sweep
    every SWEEP_SECONDS report (inotify misses files once its watch limit is reached or its queue overflows).

    The queue is bounded, so a busy daemon leaves files unclaimed in the inbox. A failure here (FolderLost among
    them) is kept in `error` for the main loop to raise.
    """

    def __init__(
        self, work: WorkArea, settler: Settler, claims: queue.Queue, leftovers: Iterable[Claim], recursive: bool
    ):
        super().__init__(name="denoise-intake", daemon=True)
        self.work, self.settler, self.claims, self.recursive = work, settler, claims, recursive
        self.leftovers = list(leftovers)
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # handed to the main loop, which raises it
            self.error = error

    def _run(self) -> None:
        for claim in self.leftovers:
            if not self._put(claim):
                return
        tick, swept = min(0.25, max(self.settler.settle / 4, 0.02)), float("-inf")
        refused: dict[Path, str] = {}  # why each file still in the inbox could not be taken, as last logged
        while not self._stopped.is_set():
            self.work.check()
            if time.monotonic() - swept >= SWEEP_SECONDS:
                swept, present = time.monotonic(), set(inbox_files(self.work.inbox, self.work.inbox, self.recursive))
                for path in present:
                    self.settler.maybe(path)
                refused = {path: reason for path, reason in refused.items() if path in present}
            for path in self.settler.due():
                claim = self._claim(path, refused)
                if claim is not None and not self._put(claim):
                    return
            self.settler.wait(tick)

    def _claim(self, path: Path, refused: dict[Path, str]) -> Claim | None:
        """Claim a due file; why it cannot be is logged once a file and reason, as each sweep tries it again."""
        try:
            claim = self.work.claim(path)
        except OSError as error:
            if refused.get(path) != str(error):
                log.warning("cannot take %s, leaving it in the inbox: %s", path, error)
            refused[path] = str(error)
            return None
        refused.pop(path, None)
        return claim

    def _put(self, claim: Claim) -> bool:
        """Queue a claim, waiting for room; False when stopped first (the claim stays in the work area)."""
        while not self._stopped.is_set():
            try:
                self.claims.put(claim, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        self._stopped.set()
        self.settler.wake()
