"""Job handlers for the runner's tests that need no torch themselves (their workers are forked
from the fork server, which imported it once): they run in milliseconds, so queueing, cancelling,
crashing and pipe hygiene are tested without training anything."""

from __future__ import annotations

import os
import sys
import time

from core.train.events import Diverged, Note, Step


def count(spec, ctx) -> str:
    """Emits `spec.config` steps (an int), then says whether this process started with torch and
    scikit-learn imported, and its parent process."""
    for i in range(1, spec.config + 1):
        ctx.emit(Step(step=i, total_steps=spec.config, epoch=1, loss=1.0 / i, lrs=(0.1,), elapsed=0.0,
                      images_per_s=None, eta=0.0))
    (ctx.out_dir / "out.txt").write_text(f"{spec.config} steps")
    ctx.emit(Note(f"torch imported: {'torch' in sys.modules}"))
    ctx.emit(Note(f"sklearn imported: {'sklearn' in sys.modules}"))
    ctx.emit(Note(f"parent: {os.getppid()}"))
    return f"counted to {spec.config}"


def sleep(spec, ctx) -> str:
    """One step every 20 ms until cancelled (or `spec.config` seconds)."""
    end = time.time() + spec.config
    i = 0
    while time.time() < end:
        if ctx.should_stop():
            from core.train.events import Cancelled
            raise Cancelled("cancelled")
        i += 1
        ctx.emit(Step(step=i, total_steps=0, epoch=1, loss=1.0, lrs=(0.1,), elapsed=0.0, images_per_s=None, eta=0.0))
        time.sleep(0.02)
    return "slept"


def deaf(spec, ctx) -> str:
    """Ignores cancellation: the runner must terminate it."""
    ctx.emit(Note("not listening"))
    time.sleep(spec.config)
    return "woke up"


def crash(spec, ctx) -> str:
    os._exit(3)  # a worker that dies without a word


def diverge(spec, ctx) -> str:
    raise Diverged("the loss became nan at step 3")


def boom(spec, ctx) -> str:
    raise KeyError("no such thing")


def fill(spec, ctx) -> str:
    """Leaves `spec.config` bytes in its folder (pruning by size)."""
    (ctx.out_dir / "blob.bin").write_bytes(b"x" * spec.config)
    return f"{spec.config} bytes"


HANDLERS = {k: f"jobfakes:{k}" for k in ("count", "sleep", "deaf", "crash", "diverge", "boom", "fill")}
