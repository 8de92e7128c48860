"""The one training loop every task shares.

A task (transfer learning today; reconstruction, segmentation and pair similarity next) builds a
`Stepper`: the loss of one batch of training indices, an evaluation, and how to put the model in
training mode. `run_loop` then does the rest, the same for every task: a one-cycle schedule over
the optimiser's parameter groups, shuffled batches, one host sync per logged step, a NaN or
infinite loss stops the run as `Diverged`, `should_stop()` stops it as `Cancelled`, and each
epoch ends with the task's validation metrics. `retry_on_oom` runs a whole attempt again at half
the batch size when CUDA runs out of memory.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from core.images import normalise
from core.train.events import Cancelled, Diverged, Epoch, Event, JobFailed, Note, Step

Emit = Callable[[Event], None]
T = TypeVar("T")


def random_shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random shift of up to 1/8 of the side (reflect padding), the same for the batch: cheap,
    on the device, and safe for digits (no flips)."""
    s = x.shape[-1]
    p = max(1, s // 8)
    dx, dy = (int(v) for v in torch.randint(0, 2 * p + 1, (2,), generator=g))
    return F.pad(x, (p, p, p, p), mode="reflect")[..., dy:dy + s, dx:dx + s]


def set_train_mode(model: nn.Module) -> None:
    """Training mode, except BatchNorm layers whose parameters are frozen: a small dataset's
    batches would otherwise overwrite their (pre-trained) running statistics while the weights
    around them cannot adapt."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def restart_batchnorm(model: nn.Module) -> None:
    """BatchNorm's running statistics restart and then average the coming batches equally.

    Called at the start of every epoch of a short run from scratch, evaluation then uses that
    epoch's statistics. With the usual exponential average, the initial variance of 1 lingers
    for hundreds of steps when the real activations are far smaller (a decoder's often are), and
    a model that trains well evaluates badly.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average
            m.reset_running_stats()


@dataclass
class Stepper:
    """What the loop needs from a task."""

    loss: Callable[[torch.Tensor], torch.Tensor]       # training indices (on the device) -> scalar loss
    evaluate: Callable[[], tuple[float, dict[str, float]]]  # -> (validation loss, the task's metrics)
    train_mode: Callable[[], None]                    # called at the start of every epoch
    n_train: int                                      # training examples
    device: torch.device
    counts_images: bool = True                        # False when steps run on cached features


@dataclass(frozen=True)
class LoopConfig:
    """The schedule of one run."""

    epochs: int                 # passes over the training set
    batch_size: int             # examples per step
    log_every: int = 1          # steps between Step events (each costs a host sync on a GPU)
    seed: int = 0               # the order of the batches


def run_loop(stepper: Stepper, opt: torch.optim.Optimizer, cfg: LoopConfig, emit: Emit,
             should_stop: Callable[[], bool] = lambda: False, series: str = "") -> Epoch:
    """Trains with a one-cycle schedule peaking at each group's "lr"; returns the last epoch."""
    n = stepper.n_train
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    peak = [grp["lr"] for grp in opt.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total)
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    step, last = 0, None
    for epoch in range(1, cfg.epochs + 1):
        stepper.train_mode()
        perm = torch.randperm(n, generator=g).to(stepper.device)
        t_epoch, seen, loss_sum, logged = time.perf_counter(), 0, 0.0, 0
        for b in range(steps_per_epoch):
            if should_stop():
                raise Cancelled("cancelled by the user")
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) == 1 and n > 1:
                idx = perm[-2:]  # BatchNorm cannot normalise one value per channel
            lrs = tuple(grp["lr"] for grp in opt.param_groups)  # the LRs this step uses
            loss = stepper.loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += len(idx)
            if step % cfg.log_every and b != steps_per_epoch - 1:
                continue
            lv = float(loss.detach())  # the one host sync per logged step
            if not math.isfinite(lv):
                raise Diverged(f"the loss became {lv} at step {step}: the learning rate ({max(peak):g}) is "
                               "probably too high; try the LR finder or a 3-10x lower rate")
            loss_sum += lv * len(idx)
            logged += len(idx)
            now = time.perf_counter()
            emit(Step(step=step, total_steps=total, epoch=epoch, loss=lv, lrs=lrs, elapsed=now - t0,
                      images_per_s=seen / max(1e-9, now - t_epoch) if stepper.counts_images else None,
                      eta=(now - t0) / step * (total - step), series=series))
        train_s = time.perf_counter() - t_epoch
        val_loss, metrics = stepper.evaluate()
        last = Epoch(epoch=epoch, train_loss=loss_sum / max(1, logged), val_loss=val_loss, metrics=metrics,
                     images_per_s=seen / train_s if stepper.counts_images else None,
                     elapsed=time.perf_counter() - t0, series=series)
        emit(last)
    assert last is not None
    return last


def learning_problem(first_loss: float | None, last: Epoch, chance: float | None, peak_lr: float) -> str | None:
    """Why a finished run looks as if it did not learn, or None: the training loss ended far above
    where it started, or validation accuracy sits at chance. Besides NaN (`Diverged`), this is how
    a learning rate of 10 shows: the run ends, the numbers are just bad."""
    acc = last.metrics.get("acc")
    if first_loss is not None and math.isfinite(first_loss) and last.train_loss > 1.5 * first_loss:
        what = f"the training loss rose from {first_loss:.3g} to {last.train_loss:.3g}"
    elif chance is not None and acc is not None and acc <= 1.2 * chance:
        what = f"validation accuracy ({acc:.1%}) is at chance ({chance:.1%})"
    else:
        return None
    return (f"This run did not learn: {what}. The peak learning rate ({peak_lr:g}) is probably too high (or far "
            "too low): run the LR finder, or try a 3-10x lower rate.")


def retry_on_oom(attempt: Callable[[int], T], batch_size: int, device: str | torch.device, emit: Emit) -> T:
    """`attempt(batch_size)`, and once more at half the batch size when CUDA runs out of memory."""
    try:
        return attempt(batch_size)
    except torch.cuda.OutOfMemoryError:
        pass
    # Retry outside the except block: its traceback would keep the first attempt's model and
    # tensors alive, and emptying the cache would free nothing.
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    half = max(1, batch_size // 2)
    emit(Note(f"CUDA out of memory: retrying once with batch size {half}"))
    try:
        return attempt(half)
    except torch.cuda.OutOfMemoryError:
        raise JobFailed("CUDA out of memory even at half the batch size; use a smaller batch, image size or "
                        "model") from None


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, size: int, batch: int = 256) -> torch.Tensor:
    """The model's outputs for uint8 images, in eval mode, in batches; float32."""
    model.eval()
    out = [model(normalise(x[i:i + batch], size)).float() for i in range(0, len(x), batch)]
    return torch.cat(out) if out else torch.empty(0)
