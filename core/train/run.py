"""The job handlers: what a worker does for each kind of job, whatever backend started it.

A handler takes the job's spec and context (see `core.train.jobs`), emits events, leaves its
results in `ctx.out_dir` and returns one sentence for the user; it raises `Cancelled`,
`Diverged` or `JobFailed` to end otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from core.train import transfer
from core.train.data import ImageSet, load_dataset
from core.train.events import Phase
from core.train.jobs import JobContext, JobSpec
from core.train.loop import retry_on_oom
from core.train.results import save_results


def _data(spec: JobSpec, ctx: JobContext) -> ImageSet:
    cfg: transfer.TrainConfig = spec.config
    ctx.emit(Phase("loading data"))
    return load_dataset(cfg.dataset, cfg.image_size, shapes_classes=cfg.shapes_classes,
                        shapes_per_class=cfg.shapes_per_class, seed=cfg.seed, zip_bytes=spec.payload)


def train(spec: JobSpec, ctx: JobContext) -> str:
    """A transfer-learning run (TrainConfig), retried once at half the batch on CUDA out of memory."""
    cfg: transfer.TrainConfig = spec.config
    data = _data(spec, ctx)
    res = retry_on_oom(lambda bs: transfer.fit(replace(cfg, batch_size=bs), data, ctx.device, ctx.emit,
                                               ctx.should_stop), cfg.batch_size, ctx.device, ctx.emit)
    save_results(res, data, ctx.out_dir)
    return f"validation accuracy {res.val_acc:.1%}"


def lr_find(spec: JobSpec, ctx: JobContext) -> str:
    """The LR finder's sweep (its LRFound event holds the curve and the suggestion)."""
    found = transfer.lr_find(spec.config, _data(spec, ctx), ctx.device, on_event=ctx.emit,
                             should_stop=ctx.should_stop)
    return f"finished: {len(found.lrs)} learning rates tried, suggested {found.suggestion:.1e}"
