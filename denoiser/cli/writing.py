"""OUTPUT for a one-shot command: locked against other writers, its scores.jsonl open, disk errors made a stop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from denoiser.pipeline import ScoresLog

DISK_ERROR_EXIT = 3  # stopped by the disk (full, read-only, failing); the same command again resumes


class DiskStop(click.ClickException):
    """The disk failed under OUTPUT: nothing partial is left, and running the same command again resumes."""

    exit_code = DISK_ERROR_EXIT


@contextmanager
def writing_to(output: Path) -> Iterator[ScoresLog]:
    """Lock OUTPUT and open its scores.jsonl for the block; an OSError in it, or scores.jsonl removed, stops the
    command with its cause."""
    from denoiser.pipeline import SCORES_FILE, ScoresLog
    from denoiser.storage import FolderLost, OutputLock, cause

    lock = OutputLock(output)
    try:
        lock.acquire()
    except BlockingIOError as error:
        raise click.UsageError(f"another denoise command or denoised is writing to {output}") from error
    except OSError as error:
        raise DiskStop(f"cannot write to OUTPUT {output}: {error}") from error
    try:
        with ScoresLog(output / SCORES_FILE) as log:
            yield log
    except OSError as error:
        raise DiskStop(
            f"stopped: {cause(error, {'OUTPUT': output})} (writing {error.filename}). "
            "No partial file was left; free space and run the same command again to resume."
        ) from error
    except FolderLost as error:
        raise DiskStop(f"stopped: {error}. Run the same command again to start a new one.") from error
    finally:
        lock.release()
