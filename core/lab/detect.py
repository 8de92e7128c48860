"""Object detection on a pretrained encoder: the lecture's "transfer learning is the norm", first half.

The slide reuses one ImageNet CNN for Fast R-CNN (Girshick, ICCV 2015). Here the detector is its
successor from torchvision's detection API, Faster R-CNN (Ren et al., NeurIPS 2015): the same
region-of-interest head as Fast R-CNN (each proposal's features pooled to 7x7, two fully connected
layers, a class and a box refinement per class), with the proposals made by a small network on the
same features (the region proposal network, RPN) instead of selective search. The backbone is our
ResNet-18 with a feature pyramid (FPN, Lin et al. 2017) over layer2-4 (strides 8, 16, 32), scaled
to the scenes: 64 channels instead of 256, a 256-wide box head instead of 1024, anchors of 12-56
pixels, 50 proposals per scene instead of 2,000 and 32 regions per scene sampled for the box
head's loss instead of 512 (a scene holds at most 8 objects): the box head costs about as much as
the backbone at these sizes, so this is most of what makes a CPU run take seconds, not minutes.

Two detectors train one after the other on the same generated scenes (`core.lab.scenes`) with the
same recipe and the same initialisation of every new layer: "pretrained" starts its ResNet-18
from the starter weights (or ImageNet's, when cached), "scratch" from random weights. Only the
encoder's start differs (and, when asked, which of its stages train: `core.lab.reuse`).

Mean average precision is torchmetrics' `MeanAveragePrecision` (the COCO evaluation, pycocotools
backend): mAP@0.5 (a detection counts when its box overlaps a true one by IoU >= 0.5) and mAP
(averaged over IoU 0.5, 0.55, ..., 0.95), overall and per class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from core.images import IMAGENET_MEAN, IMAGENET_STD
from core.lab.common import Knob, check_knobs, save_arrays
from core.lab.reuse import (BACKBONE_KNOB, PRETRAINED_KNOB, SERIES, STAGES, TRAINS, counts, encoder, resolve,
                            set_trainable)
from core.lab.scenes import SHAPES, DetectionScenes, detection_scenes
from core.train.context import JobContext
from core.train.events import Done, Note, Phase, RunInfo, Snapshot
from core.train.loop import LoopConfig, Stepper, run_loop, set_train_mode
from core.weights import WeightsUsed

LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")   # Faster R-CNN's four
LOSS_NAMES = {"loss_classifier": "box head: class", "loss_box_reg": "box head: box",
              "loss_objectness": "RPN: object or not", "loss_rpn_box_reg": "RPN: box"}
SHOW = 4                 # validation scenes pictured after every epoch
KEEP = 12                # validation scenes whose final detections the results keep
MAX_DETECTIONS = 20      # detections per scene (after non-maximum suppression)
VAL_LOSS_SCENES = 32     # validation scenes whose loss is computed every epoch (mAP uses all of them)
FPN_CHANNELS = 64        # the pyramid's channels (torchvision: 256), enough for five shapes
REPRESENTATION = 128     # the box head's two fully connected layers (torchvision: 1024)
ANCHORS = ((12, 16), (24, 32), (40, 56))   # anchor sizes (pixels) per pyramid level, strides 8, 16, 32


@dataclass(frozen=True)
class Config:
    """One comparison run (pretrained vs scratch). Units in the comments."""

    scenes: int = 400            # generated training scenes
    val_scenes: int = 100        # generated validation scenes (other scenes, the same generator)
    size: int = 64               # pixels per side (a multiple of 32: ResNet-18 halves it five times)
    classes: int = 5             # shape classes, the first of circle, square, triangle, ring, cross
    max_objects: int = 4         # objects per scene: 1 to this many
    pretrained: str = "starter"  # the pretrained network's weights: "starter" or "imagenet" (when cached)
    backbone: str = "all"        # which stages of the pretrained encoder train: "frozen", "top" (layer3-4), "all"
    augment: bool = True         # random horizontal flips of training scenes (boxes flipped with them)
    epochs: int = 4              # passes over the training scenes, per network
    batch_size: int = 8          # scenes per step
    lr: float = 1e-3             # peak LR of the one-cycle schedule (AdamW)
    seed: int = 0                # scenes, initialisation, batches
    task: ClassVar[str] = "detect"
    KNOBS: ClassVar[dict[str, Knob]] = {
        "scenes": Knob("Training scenes", 8, 20_000, step=100),
        "val_scenes": Knob("Validation scenes", 4, 5_000, step=50, more=True),
        "size": Knob("Scene size (pixels)", choices=(32, 64, 96, 128), help="ResNet-18's last map is size/32 a side."),
        "classes": Knob("Shape classes", 1, len(SHAPES), help="The first of " + ", ".join(SHAPES) + "."),
        "max_objects": Knob("Objects per scene (at most)", 1, 8),
        "pretrained": PRETRAINED_KNOB,
        "backbone": BACKBONE_KNOB,
        "augment": Knob("Flip training scenes", more=True),
        "epochs": Knob("Epochs (each network)", 1, 100),
        "batch_size": Knob("Batch size (scenes)", 2, 256, more=True),
        "lr": Knob("Peak learning rate", 1e-6, 1, whole=False, rate=True),
        "seed": Knob("Seed (scenes, initialisation)", 0, 2**31, more=True),
    }

    def __post_init__(self) -> None:
        problems: list[str] = []
        check_knobs(problems, self)
        if problems:
            raise ValueError("; ".join(problems))


# --- the detector --------------------------------------------------------------------------------------

class _NoExtraLevel(ExtraFPNBlock):
    """No pooled level above layer4: at 64 pixels layer4 is already 2x2."""

    def forward(self, results, x, names):  # type: ignore[override]
        return results, names


def detector(resnet: nn.Module, classes: int, size: int) -> FasterRCNN:
    """Faster R-CNN on a ResNet-18 (its conv1..layer4) with an FPN over layer2-4, scaled to
    `size`-pixel scenes; `classes` object classes plus the background."""
    body = BackboneWithFPN(resnet, {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512], FPN_CHANNELS,
                           extra_blocks=_NoExtraLevel())
    anchors = AnchorGenerator(ANCHORS, ((0.5, 1.0, 2.0),) * len(ANCHORS))
    return FasterRCNN(
        body, min_size=size, max_size=size, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=150, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=32,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(FPN_CHANNELS * 7 * 7, REPRESENTATION),
        box_predictor=FastRCNNPredictor(REPRESENTATION, classes + 1),
        box_batch_size_per_image=32, box_detections_per_img=MAX_DETECTIONS)


def build(cfg: Config, kind: str) -> tuple[FasterRCNN, WeightsUsed]:
    """The detector with its encoder started from `kind` weights, and the WeightsUsed. The new
    layers' initialisation depends only on the global seed (set it first): both series get the
    same."""
    resnet, used = encoder(kind)
    set_trainable(resnet, STAGES if kind == "random" else TRAINS[cfg.backbone])
    return detector(resnet, cfg.classes, cfg.size), used


# --- metrics --------------------------------------------------------------------------------------------

def mean_ap(preds: list[dict[str, torch.Tensor]], truths: list[dict[str, torch.Tensor]],
            classes: tuple[str, ...]) -> dict[str, float | dict[str, float | None]]:
    """COCO mean average precision (torchmetrics, pycocotools backend): "map50" (IoU 0.5), "map"
    (IoU 0.5:0.95), and "per_class" {name: {"ap50", "ap"}} (None for a class absent from the
    truth). Predictions: dicts of boxes (K, 4) xyxy pixels, scores (K,), labels (K,) 1-based;
    truths: boxes and labels."""
    from torchmetrics.detection import MeanAveragePrecision

    cpu = lambda ds, keys: [{k: d[k].detach().cpu() for k in keys} for d in ds]  # noqa: E731
    p, t = cpu(preds, ("boxes", "scores", "labels")), cpu(truths, ("boxes", "labels"))
    out: dict[str, float | dict[str, float | None]] = {}
    per_class: dict[str, dict[str, float | None]] = {c: {"ap50": None, "ap": None} for c in classes}
    for key, thresholds in (("ap", None), ("ap50", [0.5])):
        m = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=thresholds, class_metrics=True,
                                 backend="pycocotools")
        m.update(p, t)
        r = m.compute()
        out["map" if key == "ap" else "map50"] = max(0.0, float(r["map"]))   # -1 (no truth at all) reads as 0
        for c, v in zip(r["classes"].flatten().tolist(), r["map_per_class"].flatten().tolist()):
            if 1 <= c <= len(classes) and v >= 0:
                per_class[classes[c - 1]][key] = float(v)
    out["per_class"] = per_class
    return out


def _padded(dets: list[dict[str, torch.Tensor]], n: int) -> dict[str, np.ndarray]:
    """Detections of scenes as arrays padded with label 0: boxes (N, n, 4), scores (N, n), labels (N, n)."""
    boxes = np.zeros((len(dets), n, 4), np.float32)
    scores = np.zeros((len(dets), n), np.float32)
    labels = np.zeros((len(dets), n), np.int64)
    for i, d in enumerate(dets):
        k = min(n, len(d["boxes"]))
        boxes[i, :k] = d["boxes"][:k].detach().cpu().numpy()
        labels[i, :k] = d["labels"][:k].detach().cpu().numpy()
        if "scores" in d:
            scores[i, :k] = d["scores"][:k].detach().cpu().numpy()
        else:
            scores[i, :k] = 1.0
    return {"boxes": boxes, "scores": scores, "labels": labels}


def draw(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray, classes: tuple[str, ...],
         min_score: float = 0.5, scale: int = 4, truth: bool = False) -> np.ndarray:
    """A scene (S, S, 3) uint8 enlarged `scale` times with its boxes drawn (label 0 = padding;
    detections below `min_score` left out), each labelled with its class (and score)."""
    from torchvision.utils import draw_bounding_boxes

    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    img = img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)        # (3, sS, sS), nearest
    keep = (labels > 0) & (scores >= min_score)
    if not keep.any():
        return img.permute(1, 2, 0).numpy()
    names = [classes[int(c) - 1] if truth else f"{classes[int(c) - 1]} {s:.2f}"
             for c, s in zip(labels[keep], scores[keep])]
    palette = ["#ff595e", "#ffca3a", "#8ac926", "#1982c4", "#6a4c93"]
    colours = [palette[(int(c) - 1) % len(palette)] for c in labels[keep]]
    out = draw_bounding_boxes(img, torch.from_numpy(boxes[keep] * scale), names, colours, width=2)
    return out.permute(1, 2, 0).numpy()


# --- the run ----------------------------------------------------------------------------------------------

def _targets(data: DetectionScenes, dev: torch.device) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": b.to(dev), "labels": lab.to(dev)} for b, lab in zip(data.boxes, data.labels)]


def _flip(x: torch.Tensor, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A scene (3, S, S) and its boxes mirrored left to right."""
    s = x.shape[-1]
    b = t["boxes"]
    return x.flip(-1), {"boxes": torch.stack([s - b[:, 2], b[:, 1], s - b[:, 0], b[:, 3]], 1), "labels": t["labels"]}


def train(cfg: Config, ctx: JobContext) -> dict:
    t0 = time.perf_counter()
    dev = torch.device(ctx.device)
    ctx.emit(Phase("drawing the scenes"))
    tr = detection_scenes(cfg.scenes, cfg.size, cfg.classes, cfg.max_objects, cfg.seed)
    va = detection_scenes(cfg.val_scenes, cfg.size, cfg.classes, cfg.max_objects, cfg.seed + 1_000_003)
    x_tr, x_va = tr.images.to(dev).float() / 255, va.images.to(dev).float() / 255    # (N, 3, S, S)
    t_tr, t_va = _targets(tr, dev), _targets(va, dev)
    kind, why = resolve(cfg.pretrained)
    if why:
        ctx.emit(Note(why, warn=True))
    final: dict[str, dict] = {}
    kept: dict[str, dict[str, np.ndarray]] = {}
    for series in SERIES:
        t_series = time.perf_counter()
        torch.manual_seed(cfg.seed)                  # the same new layers for both
        model, used = build(cfg, kind if series == "pretrained" else "random")
        model.to(dev)
        trainable, frozen = counts(model)
        ctx.emit(RunInfo(weights=used, n_train=cfg.scenes, n_val=cfg.val_scenes, trainable=trainable, frozen=frozen,
                         series=series))
        flips = torch.Generator().manual_seed(cfg.seed)
        parts: list[torch.Tensor] = []               # this epoch's four losses per step
        epoch = [0]

        def loss(idx: torch.Tensor, model: FasterRCNN = model, parts: list = parts, flips=flips) -> torch.Tensor:
            images, targets = [], []
            for i in idx.tolist():
                x, t = x_tr[i], t_tr[i]
                if cfg.augment and torch.rand((), generator=flips) < 0.5:
                    x, t = _flip(x, t)
                images.append(x)
                targets.append(t)
            losses = model(images, targets)
            parts.append(torch.stack([losses[k].detach() for k in LOSSES]))
            return sum(losses[k] for k in LOSSES)

        @torch.no_grad()
        def evaluate(model: FasterRCNN = model, series: str = series, parts: list = parts,
                     epoch: list = epoch) -> tuple[float, dict[str, float]]:
            epoch[0] += 1
            dets = detect(model, x_va)
            val_loss = validation_loss(model, x_va[:VAL_LOSS_SCENES], t_va[:VAL_LOSS_SCENES])
            m = mean_ap(dets, t_va, va.classes)
            shown = _padded(dets[:SHOW], MAX_DETECTIONS)
            truth = _padded([{"boxes": b, "labels": lab} for b, lab in zip(va.boxes[:SHOW], va.labels[:SHOW])],
                            cfg.max_objects)
            step_losses = torch.stack(parts).cpu().numpy() if parts else np.zeros((0, len(LOSSES)), np.float32)
            parts.clear()
            ctx.emit(Snapshot(epoch[0], {"images": va.images[:SHOW].permute(0, 2, 3, 1).numpy(),
                                         "boxes": shown["boxes"], "scores": shown["scores"], "labels": shown["labels"],
                                         "truth_boxes": truth["boxes"], "truth_labels": truth["labels"],
                                         "losses": step_losses.astype(np.float32)}, series))
            return val_loss, {"map50": m["map50"], "map": m["map"]}

        def train_mode(model: FasterRCNN = model) -> None:
            set_train_mode(model)                    # frozen BatchNorm layers keep their statistics

        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=1e-4)
        stepper = Stepper(loss=loss, evaluate=evaluate, train_mode=train_mode, n_train=cfg.scenes, device=dev)
        run_loop(stepper, opt, LoopConfig(cfg.epochs, cfg.batch_size, seed=cfg.seed), ctx.emit, ctx.should_stop,
                 series=series)
        dets = detect(model, x_va)
        m = mean_ap(dets, t_va, va.classes)
        final[series] = {"map50": m["map50"], "map": m["map"], "per_class": m["per_class"], "weights": used.kind,
                         "trainable": trainable, "seconds": round(time.perf_counter() - t_series, 2)}
        kept[series] = _padded(dets[:KEEP], MAX_DETECTIONS)
        ctx.emit(Done(metrics={"map50": m["map50"], "map": m["map"]}, seconds=time.perf_counter() - t_series,
                      series=series))
    truth = _padded([{"boxes": b, "labels": lab} for b, lab in zip(va.boxes[:KEEP], va.labels[:KEEP])], cfg.max_objects)
    save_arrays(ctx.out_dir, images=va.images[:KEEP].permute(0, 2, 3, 1).numpy(), truth_boxes=truth["boxes"],
                truth_labels=truth["labels"],
                **{f"{s}_{k}": v for s in SERIES for k, v in kept[s].items()})
    return {"pretrained": final["pretrained"], "scratch": final["scratch"], "classes": list(va.classes),
            "weights_note": why, "seconds": round(time.perf_counter() - t0, 2)}


@torch.no_grad()
def detect(model: FasterRCNN, x: torch.Tensor, batch: int = 32) -> list[dict[str, torch.Tensor]]:
    """The detections of scenes (N, 3, S, S) floats 0..1, in eval mode (the mode is restored)."""
    was = model.training
    model.eval()
    try:
        return [d for i in range(0, len(x), batch) for d in model(list(x[i:i + batch]))]
    finally:
        model.train(was)


@torch.no_grad()
def validation_loss(model: FasterRCNN, x: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                    batch: int = 32) -> float:
    """The four losses' sum on scenes, per scene: the model in training mode (which is what makes it
    compute losses) but every BatchNorm layer in eval mode, so validation leaves no trace in it."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        total = 0.0
        for i in range(0, len(x), batch):
            losses = model(list(x[i:i + batch]), targets[i:i + batch])
            total += float(sum(losses[k] for k in LOSSES)) * len(x[i:i + batch])
        return total / len(x)
    finally:
        for m, mode in modes.items():
            m.training = mode


def summary(final: dict) -> str:
    p, s = final["pretrained"], final["scratch"]
    return (f"mAP@0.5 {p['map50']:.2f} pretrained vs {s['map50']:.2f} from scratch; mAP@0.5:0.95 "
            f"{p['map']:.2f} vs {s['map']:.2f}")
