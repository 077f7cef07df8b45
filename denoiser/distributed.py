"""`denoise batch` on paths or URLs, in this process or on Ray Data: the pipeline's `process`, run by workers.

A task is two strings, an input and where its output goes, each a local path or a URL. `run_tasks` stages a
task's remote input to a local file, runs `pipeline.process` on it as local batch does, and puts its outputs
to their URLs; a local output is written in place, under a temporary name and renamed. Records come back
rewritten to name the input and outputs as the task does.

On Ray, `Worker` is the callable class of `map_batches`: each actor loads its models once, in its own process,
and runs `run_tasks`. Only tasks (strings) go to workers and only records (JSON lines) come back.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import NamedTuple

from denoiser.engine import Settings
from denoiser.locations import Task, extra_error, fetch, heatmap_location, is_url, put, record_key
from denoiser.pipeline import Job, Models, Options, prefetch, process, record
from denoiser.records import Record
from denoiser.storage import process_alive

BATCH_SIZE = 8  # tasks per Ray Data batch: enough for decode, inference and writes to overlap in a worker
MAX_DEATHS = 2  # an input on which a worker died (or raised) this many times, alone, is recorded as failed
STAGE_PREFIX = "denoise-stage-"  # scratch folders in the temporary folder, one per process: PREFIX + PID


class Unreachable(RuntimeError):
    """The Ray cluster that RAY_ADDRESS names does not answer."""


class RunConfig(NamedTuple):
    """What a worker needs to build its models and run: small values, sent to each worker once."""

    settings: Settings
    model: str | None
    scorer: str | None
    options: Options
    threads: int = 0  # TensorFlow's intra-op threads in a worker; 0 leaves TensorFlow's default (all cores)


class WorkerPlan(NamedTuple):
    """The actor pool: how many workers, the CPUs and GPUs each reserves, and TensorFlow's threads in each."""

    count: int
    cpus: float
    gpus: float
    threads: int = 0  # TensorFlow's intra-op threads in each; 0 (on a GPU): TensorFlow's default


def worker_plan(nodes: list[dict], workers: int | None = None) -> WorkerPlan:
    """The actor pool for a cluster, given each live node's resources.

    With GPUs: one worker per GPU. Without: one worker per core, each running TensorFlow on one thread (on a
    2-core host, two such workers ran 8-25% faster than one on both cores: docs/ray.md). `workers` overrides
    the count; the cluster's GPUs, or its cores, are then shared out among them, and TensorFlow's threads.
    """
    gpus = sum(int(node.get("GPU", 0)) for node in nodes)
    cores = [int(node["CPU"]) for node in nodes if node.get("CPU", 0) >= 1] or [1]
    if gpus:
        count = workers or gpus
        return WorkerPlan(count, 1, min(1.0, gpus / count))
    count = workers or sum(cores)
    share = _cpu_share(cores, count)
    return WorkerPlan(count, share, 0, max(1, int(share)))


def _cpu_share(cores: list[int], count: int) -> float:
    """The most whole CPUs each of `count` workers can hold with all of them placed on the nodes (a fraction
    of one when there are more workers than cores)."""
    for share in range(max(cores), 0, -1):
        if sum(node // share for node in cores) >= count:
            return share
    return sum(cores) / count


def run_tasks(tasks: Iterable[Task], models: Models, options: Options = Options()) -> Iterator[Record]:
    """Run tasks through `pipeline.process`; yield one record per task, in order, each once its outputs are put."""
    with tempfile.TemporaryDirectory(prefix=f"{STAGE_PREFIX}{os.getpid()}-") as scratch:
        staged: deque[_Staged] = deque()

        def jobs() -> Iterator[Job]:
            for item in prefetch(
                lambda pair: _stage(*pair, Path(scratch), options.max_bytes), enumerate(tasks), options.prefetch
            ):
                staged.append(item)
                yield item.job

        with (
            closing(process(jobs(), models, options)) as records,
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="denoise-put") as uploads,
        ):
            window: deque = deque()
            for entry in records:
                window.append(uploads.submit(_deliver, staged.popleft(), entry))
                while window and (len(window) > options.prefetch or window[0].done()):
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()


class _Staged(NamedTuple):
    task: Task
    job: Job  # local paths: the input itself or its download, the output itself or a scratch file to put
    folder: Path | None  # the scratch folder of a remote input or output


def _stage(index: int, task: Task, scratch: Path, max_bytes: int) -> _Staged:
    """The local job for a task: a remote input downloaded into scratch, a remote output written there first."""
    folder = scratch / str(index) if is_url(task.source) or is_url(task.target) else None
    refusal, source, target = task.refusal or None, Path(task.source), Path(task.target)
    if is_url(task.source):
        source = folder / "in" / task.source.rpartition("/")[2]
        refusal = refusal or fetch(task.source, source, max_bytes)
    if is_url(task.target):
        target = folder / "out" / task.target.rpartition("/")[2]
    return _Staged(task, Job(source, target, refusal), folder)


def _deliver(item: _Staged, entry: Record) -> Record:
    """Put a remote task's outputs (one PUT each) and name the task's locations in its record."""
    task = item.task
    try:
        if is_url(task.target):
            outputs = (entry.output, task.target), (entry.heatmap, heatmap_location(task.target))
            for written, url in outputs:
                if written:
                    put(Path(written), url)
            entry = entry.but(
                output=entry.output and task.target, heatmap=entry.heatmap and heatmap_location(task.target)
            )
    finally:
        if item.folder:
            shutil.rmtree(item.folder, ignore_errors=True)
    return entry.but(input=task.source)


def failed(task: Task, error: str) -> Record:
    """The record of a task that failed outside the pipeline (its worker died or raised on it)."""
    return record(Job(Path(task.source), Path(task.target)), time.perf_counter(), error=error).but(input=task.source)


def remove_stale_scratch() -> None:
    """Delete the scratch folders of processes that no longer run (a worker killed mid-task leaves its own)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*"):
        pid = folder.name[len(STAGE_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


class Attempts:
    """The driver's count of unfinished attempts per input, shared by all workers (a Ray actor).

    A batch runs whole the first time. When one of its inputs was in a batch that never finished (its worker
    died, or raised), the batch runs one input at a time, and an input that ends its worker MAX_DEATHS times
    alone is recorded as failed, so one input can neither stall the job nor kill it.
    """

    def __init__(self):
        self.started: set[str] = set()  # inputs of batches that began and have not ended
        self.alone: dict[str, int] = {}  # inputs begun on their own: how often, without ending

    def begin(self, keys: list[str]) -> bool:
        """Note a batch's start; whether any of its inputs was in an earlier batch that never ended."""
        retried = not self.started.isdisjoint(keys)
        self.started.update(keys)
        return retried

    def begin_alone(self, key: str) -> int:
        """Note an input's start on its own; how many earlier such starts never ended."""
        before = self.alone.get(key, 0)
        self.alone[key] = before + 1
        return before

    def end(self, keys: list[str]) -> None:
        """Forget inputs whose records are made."""
        self.started.difference_update(keys)
        for key in keys:
            self.alone.pop(key, None)


class Worker:
    """A Ray Data worker: builds its models once in its own process, then runs batches of tasks."""

    def __init__(self, config: RunConfig, attempts):
        """`attempts`: the handle of the driver's Attempts actor."""
        if config.threads:
            os.environ["TF_NUM_INTRAOP_THREADS"] = str(config.threads)  # before TensorFlow starts, in Models
        remove_stale_scratch()
        self.models = Models(config.settings, config.model, config.scorer)
        self.options, self.attempts = config.options, attempts

    def __call__(self, batch: dict) -> dict:
        """Records (JSON lines) for a batch of tasks (columns source, target and refusal)."""
        tasks = [Task(str(s), str(t), str(r)) for s, t, r in zip(batch["source"], batch["target"], batch["refusal"])]
        return {"record": [entry.line() for entry in self.run(tasks)]}

    def run(self, tasks: list[Task]) -> list[Record]:
        """Run a batch whole, or one task at a time when it has been tried before."""
        keys = [record_key(task.source) for task in tasks]
        if not self._ask("begin", keys):
            try:
                entries = list(run_tasks(tasks, self.models, self.options))
            except OSError:
                raise  # the storage failed, not an input: the run stops, and running it again resumes
            except Exception:  # noqa: BLE001 - an input broke the pipeline: find which, one at a time
                logging.getLogger(__name__).warning(
                    "a batch raised; running its %d inputs alone", len(tasks), exc_info=True
                )
            else:
                self._ask("end", keys)
                return entries
        return [self._alone(task, key) for task, key in zip(tasks, keys)]

    def _alone(self, task: Task, key: str) -> Record:
        """One task on its own; failed without running once it has ended a worker MAX_DEATHS times."""
        deaths = self._ask("begin_alone", key)
        if deaths >= MAX_DEATHS:
            entry = failed(task, f"worker died {deaths} times on this input")
        else:
            try:
                [entry] = run_tasks([task], self.models, self.options)
            except OSError:
                raise
            except Exception as error:  # noqa: BLE001 - recorded as this input's failure, and the job goes on
                entry = failed(task, f"worker error: {type(error).__name__}: {error}")
        self._ask("end", [key])
        return entry

    def _ask(self, method: str, *args):
        """Call the driver's attempt counter."""
        import ray

        return ray.get(getattr(self.attempts, method).remote(*args))


def connect() -> None:
    """Join the Ray cluster that RAY_ADDRESS names (or the one started on this machine), else start one here."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise extra_error("--ray", "ray") from None
    if not ray.is_initialized():
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as error:
            raise Unreachable(f"cannot reach the Ray cluster: {error}") from None
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its progress notes would break the progress bar
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    context.raise_original_map_exception = True  # a worker's OSError reaches the driver as one: exit code 3


def cluster_plan(workers: int | None) -> WorkerPlan:
    """The actor pool for the cluster this process is connected to."""
    import ray

    return worker_plan([node["Resources"] for node in ray.nodes() if node["Alive"]], workers)


def run_on_ray(tasks: list[Task], config: RunConfig, plan: WorkerPlan, worker: type = Worker) -> Iterator[Record]:
    """Run tasks on Ray Data's streaming executor with a pool of `worker` actors; yield records as batches end."""
    import ray

    attempts = ray.remote(num_cpus=0)(Attempts).remote()
    dataset = ray.data.from_items([task._asdict() for task in tasks])
    records = dataset.map_batches(
        worker,
        fn_constructor_kwargs={"config": config._replace(threads=plan.threads), "attempts": attempts},
        batch_size=BATCH_SIZE,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.count),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus or None,
    )
    try:
        for row in records.iter_rows():
            yield Record.parse(row["record"])
    finally:
        ray.kill(attempts)
