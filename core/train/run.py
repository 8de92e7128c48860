"""The job handlers: what a worker does for each kind of job, whatever backend started it.

A handler takes the job's spec and context (see `core.train.jobs`), emits events, leaves its
results in `ctx.out_dir` and returns one sentence for the user; it raises `Cancelled`,
`Diverged` or `JobFailed` to end otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from core.train import lr_finder, transfer
from core.train.data import ImageSet, load_dataset
from core.train.events import Note, Phase
from core.train.context import JobContext
from core.train.jobs import JobSpec
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
    cap_gpu_memory(ctx.device)
    data = _data(spec, ctx)
    res = retry_on_oom(lambda bs: transfer.fit(replace(cfg, batch_size=bs), data, ctx.device, ctx.emit,
                                               ctx.should_stop), cfg.batch_size, ctx.device, ctx.emit)
    save_results(res, data, ctx.out_dir)
    message = f"validation accuracy {res.val_acc:.1%}"
    del res
    report_gpu_memory(ctx)
    return message


def cap_gpu_memory(device: str) -> None:
    """$CONVNETLAB_GPU_MEMORY_GB caps this worker's share of the GPU (two jobs share one card; a
    small cap also forces the out-of-memory retry in the GPU benchmark)."""
    import os

    import torch

    cap = os.environ.get("CONVNETLAB_GPU_MEMORY_GB")
    if cap and torch.device(device).type == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, float(cap) * 1e9 / total))


def report_gpu_memory(ctx: JobContext) -> None:
    """On CUDA: a note with the job's peak memory and what it still holds once its tensors are freed."""
    import gc

    import torch

    if torch.device(ctx.device).type != "cuda":
        return
    gc.collect()
    torch.cuda.empty_cache()
    ctx.emit(Note(f"GPU memory: peak {torch.cuda.max_memory_allocated() / 1e9:.2f} GB allocated; "
                  f"{torch.cuda.memory_allocated() / 1e9:.3f} GB still allocated after the run"))


def lr_find(spec: JobSpec, ctx: JobContext) -> str:
    """The LR finder's sweep (its LRFound event holds the curve and the suggestion)."""
    found = lr_finder.lr_find(spec.config, _data(spec, ctx), ctx.device, on_event=ctx.emit,
                              should_stop=ctx.should_stop)
    return f"finished: {len(found.lrs)} learning rates tried, suggested {found.suggestion:.1e}"
