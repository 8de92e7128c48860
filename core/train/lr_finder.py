"""The learning-rate finder (Smith 2015; fast.ai's `lr_find`): an exponential LR sweep, one step per
LR, on the same model and data a transfer-learning run would train, and the LR it suggests."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.images import normalise
from core.train.data import ImageSet
from core.train.events import Cancelled, Event, LRFound, LRPoint, Phase
from core.train.loop import set_train_mode
from core.train.transfer import TrainConfig, build_transfer_model, make_split

Emit = Callable[[Event], None]


def lr_find(cfg: TrainConfig, data: ImageSet, device: str | torch.device = "cpu", start: float = 1e-6,
            end: float = 1.0, steps: int = 60, on_event: Emit = lambda e: None,
            should_stop: Callable[[], bool] = lambda: False) -> LRFound:
    """Exponential LR sweep (Smith 2015, fast.ai's lr_find): one step per LR, smoothed loss.

    Stops early when the loss explodes (above 4x its minimum or not finite); see `suggest_lr`.
    """
    dev = torch.device(device)
    sp = make_split(data, cfg, dev)
    on_event(Phase("building the model"))
    tm = build_transfer_model(cfg, len(data.classes))
    model = tm.model.to(dev)
    set_train_mode(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=start, weight_decay=cfg.weight_decay)
    gamma = (end / start) ** (1 / max(1, steps - 1))
    g = torch.Generator().manual_seed(cfg.seed)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    for i in range(steps):
        if should_stop():
            raise Cancelled("cancelled by the user")
        lr = start * gamma ** i
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(sp.y_train), (min(cfg.batch_size, len(sp.y_train)),), generator=g).to(dev)
        loss = F.cross_entropy(model(normalise(sp.x_train[idx], cfg.image_size)), sp.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            break
        avg = 0.9 * avg + 0.1 * lv if i else lv
        smooth = avg / (1 - 0.9 ** (i + 1)) if i else lv
        lrs.append(lr)
        losses.append(smooth)
        on_event(LRPoint(step=i + 1, total_steps=steps, lr=lr, loss=smooth))
        best = min(best, smooth)
        if smooth > 4 * best and i > 5:
            break
    found = LRFound(lrs=tuple(lrs), losses=tuple(losses), suggestion=suggest_lr(lrs, losses))
    on_event(found)
    return found


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """A tenth of the LR at the lowest smoothed loss: fast.ai's rule of thumb, robust to the noisy
    start of the sweep, within the range swept. Always a finite, positive number."""
    if not lrs:
        return 1e-3
    s = float(lrs[int(np.argmin(losses))]) / 10
    return min(max(s, lrs[0]), lrs[-1]) if math.isfinite(s) and s > 0 else 1e-3
