"""The daemon's main loop: recover, watch, claim, batch through `denoiser.pipeline.process`, record, route.

Inference runs in the main thread. SIGTERM and SIGINT raise `Shutdown` there and SIGHUP raises `Reload`
(as watchdog's own watchmedo does); the `finally` clauses stop and join the observer and the other
threads. Claims not finished by then stay in the work area and are processed by the next start.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TypeVar

from denoised.claims import Claim, Router, WorkArea, inside, refusal, scored_claims
from denoised.config import Config, StartupError
from denoised.intake import InboxEvents, Intake, Settler, start_observer
from denoised.metrics import Counters, MetricsServer
from denoised.systemd import WARM_UP_SECONDS, WatchdogPinger, extend_timeout, notify, reloading_message, watchdog_sec
from denoiser.imageio import ImageError, probe
from denoiser.pipeline import (
    ANOMALIES,
    FAILED,
    PROCESSED,
    SCORES_FILE,
    Job,
    Models,
    Options,
    ScoresLog,
    process,
    record,
)
from denoiser.records import Record
from denoiser.storage import FolderLost, OutputLock, Stall, cause

T = TypeVar("T")
MAX_BACKOFF = 60.0  # seconds between retries of a write that failed for the disk's sake (a full OUTPUT)

log = logging.getLogger("denoised")
MAX_ATTEMPTS = 5  # runs that died with a claim in flight before it is given up (kill -9 counts too)
BACKLOG_BATCHES = 8  # batches of tiles one `process` call takes at most when files are waiting


class Shutdown(Exception):
    """SIGTERM or SIGINT: stop taking files, leave unfinished claims for the next start, exit 0."""


class Reload(Exception):
    """SIGHUP: stop like Shutdown, read the config again, and start again with the warm models."""


class Signals:
    """Raises Shutdown or Reload in the main thread while armed; a signal that comes while disarmed waits for arm()."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self):
        self.armed = False
        self.pending: type[Exception] | None = None
        self.previous = {}

    def install(self) -> None:
        self.previous = {signum: signal.signal(signum, self._handle) for signum in self.HANDLED}

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def arm(self) -> None:
        """Raise a signal that came while disarmed, else let the next one raise."""
        pending, self.pending = self.pending, None
        if pending is not None:
            raise pending()
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    @contextmanager
    def held(self):
        """Defer signals while the block runs; one that came meanwhile is raised after it."""
        armed, self.armed = self.armed, False
        try:
            yield
        finally:
            if armed:
                self.arm()

    def _handle(self, signum: int, _frame) -> None:
        kind = Reload if signum == signal.SIGHUP else Shutdown
        notify("STOPPING=1" if kind is Shutdown else reloading_message())
        if self.armed:
            self.armed = False
            raise kind()
        if self.pending is None or kind is Shutdown:
            self.pending = kind


class Folders(NamedTuple):
    """The two folders a daemon holds for its life: the inbox's work area and OUTPUT's lock."""

    work: WorkArea
    output: OutputLock

    def release(self) -> None:
        self.work.unlock()
        self.output.release()


class Run(NamedTuple):
    """What one life of the watch loop shares between its steps."""

    config: Config
    models: Models
    folders: Folders
    router: Router
    scores: ScoresLog
    counters: Counters
    signals: Signals = Signals()

    @property
    def work(self) -> WorkArea:
        return self.folders.work


def run_daemon(load: Callable[[], Config]) -> int:
    """Serve with log lines on stderr; 0 after SIGTERM/SIGINT, 2 with a message when it cannot start, 1 when INBOX's
    work area or OUTPUT's scores.jsonl is gone (systemd then starts it again on the folders now there)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return serve(load)
    except StartupError as error:
        log.error("cannot start: %s", error)
        return 2
    except FolderLost as error:
        log.error("stopped: %s; start again to use the folders now there", error)
        return 1


def serve(load: Callable[[], Config]) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP re-reads the config. Raises StartupError when it cannot start."""
    config = load()
    folders = prepare(config)
    signals, counters, health = Signals(), Counters(), []
    timeout = watchdog_sec()  # pings go on while the watch threads live and the pipeline progresses or idles
    pinger = (
        WatchdogPinger(
            timeout / 2, lambda: bool(health) and all(t.is_alive() for t in health) and counters.progressing(timeout)
        )
        if timeout
        else None
    )
    models = None
    signals.install()
    try:
        if pinger:
            pinger.start()
        while True:
            try:
                signals.arm()
                models = warm_models(config, models, counters)
                watch(config, models, folders, counters, signals, health)
            except Reload:
                config, folders = reload(load, config, folders)
    except Shutdown:
        log.info("stopped")
        return 0
    finally:
        signals.disarm()
        if pinger:
            pinger.stop()
            pinger.join()
        folders.release()
        signals.restore()


def prepare(config: Config, held: Folders | None = None) -> Folders:
    """Check the folders and take the inbox's work area and OUTPUT (reusing those `held` already holds).

    StartupError says what is wrong; nothing new stays taken then.
    """
    check_device(config.device)
    check_folders(config)
    keep_inbox = held is not None and same_folder(config.inbox, held.work.inbox)
    keep_output = held is not None and same_folder(config.output, held.output.output)
    work = held.work if keep_inbox else take_inbox(config.inbox)
    try:
        output = held.output if keep_output else take_output(config.output)
    except StartupError:
        if not keep_inbox:
            work.unlock()
        raise
    return Folders(work, output)


def same_folder(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def take_inbox(inbox: Path) -> WorkArea:
    """Lock INBOX's work area; StartupError when another daemon watches it."""
    work = WorkArea(inbox)
    try:
        work.lock()
    except BlockingIOError as error:
        raise StartupError(f"another denoised is already watching {inbox}") from error
    except OSError as error:
        raise StartupError(f"INBOX {inbox} is not writable: {error}") from error
    return work


def take_output(output: Path) -> OutputLock:
    """Lock OUTPUT; StartupError when another daemon or a `denoise batch` writes there."""
    try:
        return OutputLock(output).acquire()
    except BlockingIOError as error:
        raise StartupError(f"another denoised or denoise command is already writing to {output}") from error
    except OSError as error:
        raise StartupError(f"OUTPUT {output} is not writable: {error}") from error


def check_device(device: str) -> None:
    """A GPU named by `device = "gpu"` (or gpu:N) must be visible: StartupError, not a silent CPU run."""
    if not device.startswith("gpu"):
        return
    from denoiser.engine import NoGPUError, resolve_device

    try:
        resolve_device(device)
    except NoGPUError as error:
        raise StartupError(f"{error}; under systemd, install the GPU drop-in (denoised install-unit --gpu)") from error


def check_folders(config: Config) -> None:
    """INBOX must be a folder, OUTPUT writable and outside it, the model present."""
    inbox, output = config.inbox, config.output
    if not inbox.is_dir():
        raise StartupError(f"INBOX {inbox} is not a folder")
    if inside(output, inbox):
        raise StartupError(f"OUTPUT {output} must not be INBOX or inside it")
    if inside(inbox, output):
        raise StartupError(f"INBOX {inbox} must not be inside OUTPUT: originals would be fed back in")
    try:
        for folder in (output, output / PROCESSED, output / FAILED, output / ANOMALIES):
            folder.mkdir(parents=True, exist_ok=True)
            if not inside(folder, output):
                raise StartupError(f"{folder} escapes OUTPUT")
        with tempfile.NamedTemporaryFile(dir=output, prefix=".denoised-probe-"):
            pass
    except OSError as error:
        raise StartupError(f"OUTPUT {output} is not writable: {error}") from error
    model_path(config.model)
    model_path(config.scorer)


def model_path(spec: str | None) -> str | None:
    """A configured model or scorer file (a shipped name resolved), or None for the shipped default."""
    from denoiser.artifact import resolve_model

    try:
        return str(resolve_model(spec)) if spec else None
    except FileNotFoundError as error:
        raise StartupError(str(error)) from error


def reload(load: Callable[[], Config], config: Config, held: Folders) -> tuple[Config, Folders]:
    """The new config and folders, or the old ones (with a logged reason) when the new config is unusable."""
    try:
        new = load()
        folders = prepare(new, held)
    except StartupError as error:
        log.error("config not reloaded, keeping the running one: %s", error)
        return config, held
    if folders.work is not held.work:
        held.work.unlock()
    if folders.output is not held.output:
        held.output.release()
    log.info("config reloaded")
    return new, folders


def warm_models(config: Config, models: Models | None, counters: Counters) -> Models:
    """Load and warm the engines once; reused across reloads while the model settings stay.

    Each engine's load and warm-up asks systemd for WARM_UP_SECONDS more start (or reload) time first and
    counts as progress for the watchdog once done.
    """
    path, scorer = model_path(config.model), model_path(config.scorer)
    if models is not None and (models.settings, models.model, models.scorer_path) == (config.settings(), path, scorer):
        return models
    models = Models(config.settings(), path, scorer)
    for channels in (1,) if path else (1, 3):
        extend_timeout(WARM_UP_SECONDS)
        engine = models.for_channels(channels)
        engine.warm()
        counters.beat()
    return models


def watch(config: Config, models: Models, folders: Folders, counters: Counters, signals: Signals, health: list) -> None:
    """One life of the watch: recover leftovers, then claim and process until Shutdown or Reload is raised."""
    claims: queue.Queue[Claim] = queue.Queue(config.queue_size)
    settler = Settler(config.settle)
    with ExitStack() as stack:
        try:
            scores = stack.enter_context(ScoresLog(config.output / SCORES_FILE))
            run = Run(
                config, models, folders, Router(config.inbox, config.output, config.after), scores, counters, signals
            )
            leftovers = retrying(run, lambda: recover(run))
            observer = start_observer(
                config.inbox, InboxEvents(config.inbox, config.recursive, settler), config.recursive, config.polling
            )
            stack.callback(stop_thread, observer)
            intake = Intake(folders.work, settler, claims, leftovers, config.recursive)
            stack.callback(stop_thread, intake)
            intake.start()
            if config.metrics_port:
                stack.callback(start_metrics(config, counters, claims, settler).close)
            health[:] = [observer, intake]
            stack.callback(health.clear)
            ready(config)
            for batch in batches(claims, intake, run):
                handle(batch, run)
        finally:
            signals.disarm()  # no Shutdown may cut the clean-up short; one that comes now waits for arm()


def stop_thread(thread) -> None:
    """Stop a watchdog observer or our own thread and wait for it."""
    thread.stop()
    if thread.is_alive():
        thread.join()


def start_metrics(config: Config, counters: Counters, claims: queue.Queue, settler: Settler) -> MetricsServer:
    """Serve the counters on metrics_address:metrics_port while this watch lives, the queue counted from here."""
    counters.count_queue(lambda: claims.qsize() + len(settler))
    host = f"[{config.metrics_address}]" if ":" in config.metrics_address else config.metrics_address
    try:
        server = MetricsServer(counters.registry, config.metrics_address, config.metrics_port)
    except OSError as error:
        raise StartupError(f"cannot serve metrics on {host}:{config.metrics_port}: {error}") from error
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    return server.start()


def ready(config: Config) -> None:
    """Tell systemd and the log that files are being taken."""
    mode = "polling" if config.polling else "inotify"
    log.info(
        "watching %s -> %s (%s, settle %.1f s, after: %s)",
        config.inbox,
        config.output,
        mode,
        config.settle,
        config.after,
    )
    notify(f"READY=1\nSTATUS=watching {config.inbox}")


def recover(run: Run) -> list[Claim]:
    """Finish the claims of an earlier run that already have a record; return the others to process again."""
    pending = run.work.pending()
    scored = scored_claims(run.scores.path, (claim.id for claim in pending))
    again = []
    for claim in pending:
        run.router.clean_up(claim)
        if claim.id in scored:
            log.info("finishing %s, scored by an earlier run", claim.relative)
            settle(claim, scored[claim.id], run)
        elif claim.attempts >= MAX_ATTEMPTS:
            reason = f"gave up: the daemon stopped {claim.attempts} times while processing it"
            entry = record(Job(claim.file, run.router.target(claim)), time.perf_counter(), error=reason)
            finish(claim, entry, run, {})
        else:
            again.append(claim)
    if again:
        log.info("%d files claimed by an earlier run are processed again", len(again))
    return again


def batches(claims: queue.Queue, intake: Intake, run: Run) -> Iterator[list[Claim]]:
    """Claims gathered until their tiles fill a batch or max_latency ms pass, ordered by the model they need.

    Claims already waiting are added without waiting, up to BACKLOG_BATCHES batches of tiles, so that
    under load each model gets full batches. A claim that was in flight when an earlier run stopped
    goes alone, so a file that crashes the daemon cannot take the files batched with it down too.
    """
    held = None
    while True:
        first, held = held or next_claim(claims, intake, run.counters), None
        if first.attempts:
            yield [first]
            continue
        deadline = time.monotonic() + run.config.max_latency / 1000
        batch, needs = [first], [footprint(first.file, run)]
        while (tiles := sum(tiles for _, tiles in needs)) < BACKLOG_BATCHES * run.config.batch_size:
            wait = max(deadline - time.monotonic(), 0) if tiles < run.config.batch_size else 0
            try:
                claim = claims.get(timeout=wait) if wait else claims.get_nowait()
            except queue.Empty:
                break
            if claim.attempts:
                held = claim
                break
            batch.append(claim)
            needs.append(footprint(claim.file, run))
        yield [batch[i] for i in sorted(range(len(batch)), key=lambda i: needs[i][0])]


def next_claim(claims: queue.Queue, intake: Intake, counters: Counters) -> Claim:
    """The next claim, raising whatever stopped the intake thread; idle for the watchdog while the queue is empty."""
    try:
        while True:
            if intake.error is not None:
                raise intake.error
            try:
                return claims.get(timeout=0.5)
            except queue.Empty:
                counters.set_idle(True)
    finally:
        counters.set_idle(False)


def footprint(path: Path, run: Run) -> tuple[int, float]:
    """(channels, tiles) an image will take, from its header, counted in tiles of the largest size as batches
    are (by area); (0, 1) when that cannot be read."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return 0, 1  # never open a FIFO, device or link here
        width, height, channels = probe(path, run.config.max_bytes)
    except (OSError, ImageError):
        return 0, 1
    engine = run.models.for_channels(channels)
    plan = engine.plan(height, width)
    return channels, plan.count * plan.tile[0] * plan.tile[1] / engine.tile**2


def handle(batch: list[Claim], run: Run) -> None:
    """Finish a batch of claims, retrying with backoff while the disk fails (a full OUTPUT) until all are done."""
    started = time.perf_counter()
    recorded: dict[str, Record] = {}
    retrying(run, lambda: finish_open(batch, run, recorded))
    run.counters.add_busy(time.perf_counter() - started)


def finish_open(batch: list[Claim], run: Run, recorded: dict[str, Record]) -> None:
    """Run the claims still open through the shared pipeline together (refused ones fail at once); record and
    route each. Claims `recorded` by an earlier try whose routing failed are only routed."""
    jobs, claims = [], []
    for claim in batch:
        if claim.id in recorded and claim.folder.is_dir():
            settle(claim, recorded[claim.id], run)
        elif not os.path.lexists(claim.file):
            if claim.id not in recorded:
                log.warning("claimed file %s vanished from the work area", claim.file)
            run.work.release(claim)
        else:
            target = run.router.target(claim, [job.target for job in jobs])
            jobs.append(Job(claim.file, target, refusal(claim, run.config.inbox, run.config.output)))
            claims.append(claim)
    try:
        for claim in claims:
            run.work.count_attempt(claim)
        options = Options(
            run.config.max_pixels,
            max_bytes=run.config.max_bytes,
            heatmaps=run.config.heatmaps,
            progress=run.counters.beat,
            single_frame=run.config.after == "delete",  # a multi-frame original would take its other frames along
        )
        with closing(process(jobs, run.models, options)) as records:
            for claim, entry in zip(claims, records):
                finish(claim, entry, run, recorded)
    except (Shutdown, Reload, OSError, FolderLost):
        for claim in claims:
            with suppress(OSError):
                run.work.count_attempt(claim, -1)  # a clean stop, a full disk or a lost folder is not the file's fault
        raise


def retrying(run: Run, action: Callable[[], T]) -> T:
    """`action()`, called again after an OSError with backoff (1 s doubling to a minute) while the cause is shown
    in the log, the metrics and `denoise status`; progress is reported to the watchdog while waiting. FolderLost
    instead when the error came from the work area's removal, which no retry mends."""
    delay, stalled = 1.0, False
    while True:
        try:
            result = action()
        except OSError as error:
            run.work.check()
            reason = cause(error, {"OUTPUT": run.config.output, "INBOX": run.config.inbox})
            log.error("%s: %s; retrying in %.0f s", reason, error, delay)
            show_stall(run, reason)
            stalled = True
            wait_beating(run, delay)
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        if stalled:
            log.info("recovered: writing again")
            show_stall(run, None)
        return result


def show_stall(run: Run, reason: str | None) -> None:
    """Publish the stall cause (None: cleared) to the metrics and to OUTPUT's lock file for `denoise status`."""
    run.counters.set_stall(reason)
    since = datetime.now(UTC).isoformat(timespec="seconds") if reason else None
    run.folders.output.publish(Stall(os.getpid(), reason, since))


def wait_beating(run: Run, seconds: float) -> None:
    """Sleep (a signal still stops it), telling the watchdog every second that the loop is alive."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        run.counters.beat()
        time.sleep(min(left, 1.0))


def finish(claim: Claim, entry: Record, run: Run, recorded: dict[str, Record]) -> None:
    """Append the record (the commit point), then route the files, release the claim and count it.

    Signals wait until all of this is done, so a reload cannot count a record twice or not at all.
    """
    entry = entry.but(input=str(run.config.inbox / claim.relative), claim=claim.id)
    with run.signals.held():
        run.scores.append(entry)
        recorded[claim.id] = entry
        settle(claim, entry, run)


def settle(claim: Claim, entry: Record, run: Run) -> None:
    """Route a recorded claim's files, release it, count it and log it."""
    with run.signals.held():
        run.router.route(claim, entry)
        run.work.release(claim)
        run.counters.add(entry)
    if entry.ok:
        flag = " anomalous" if entry.anomalous else ""
        log.info("ok %s -> %s score %s%s", claim.relative, entry.output, entry.score, flag)
    else:
        log.warning("failed %s: %s", claim.relative, entry.error)
