"""What a task's training code gets from whatever runs it: a way to report events, a way to learn
it should stop, a folder for its results and the device. It knows nothing of runners, queues or
processes, so a task runs the same in a worker, on a Ray cluster, in the CLI and in a test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.train.events import Event


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its spec."""

    emit: Callable[[Event], None]
    should_stop: Callable[[], bool]
    out_dir: Path              # where the handler leaves its results
    device: str                # "cpu" or "cuda"
