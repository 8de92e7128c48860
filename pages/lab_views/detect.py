"""Training Lab: object detection on a pretrained encoder vs from scratch (layout only; see core.lab.detect)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.lab import detect as dt
from core.lab.common import LabResults
from core.lab.reuse import SERIES, compare
from core.lab.scenes import SHAPES, detection_scenes
from core.train.events import Event, Snapshot
from pages.lab_views.reuse import COLOURS, NAMES, two_curves, verdict, weights_lines
from pages.lab_views.widgets import knob_widgets

INTRO = ("The lecture: transfer learning is the norm. A detector reuses a CNN pretrained on another task as its "
         "backbone and only learns the detection layers on top. Here a Faster R-CNN (Fast R-CNN's region head with "
         "its own proposal network) finds shapes in generated scenes twice, with the same recipe: on our pretrained "
         "ResNet-18, and on the same ResNet-18 from scratch.")


# Measured on a 2-core CPU (seed 0; bench/README.md, bench_lab section).
MEASURED = ("The default run (400 scenes, 4 epochs per network, seed 0) ends at mAP@0.5 0.65 with the starter encoder "
            "fine-tuned vs 0.51 from scratch; it takes about 75 s on an idle 2-core CPU (both networks), seconds on "
            "a GPU. With 5 epochs (400 scenes, seed 0): mAP@0.5 0.73 with the starter encoder fine-tuned "
            "vs 0.47 from scratch; 0.57 when only its layer3-4 train. The starter weights were pre-trained on "
            "generated fractals, not photographs, and they still help: edges and blobs transfer. A frozen encoder "
            "leaves only the pyramid and the heads to learn.")


def controls(d: dict[str, Any]) -> dict[str, Any]:
    return knob_widgets(dt.Config, d, ["scenes", "classes", "max_objects", "pretrained", "backbone", "epochs", "lr"],
                        "det")


@st.cache_data(max_entries=8)
def _examples(size: int, classes: int, max_objects: int, seed: int) -> list[np.ndarray]:
    s = detection_scenes(4, size, classes, max_objects, seed)
    return [dt.draw(s.images[i].permute(1, 2, 0).numpy(), s.boxes[i].numpy(), s.labels[i].numpy(),
                    np.ones(len(s.labels[i]), np.float32), s.classes, scale=3, truth=True) for i in range(4)]


def explain(cfg: dt.Config | None) -> None:
    with st.expander("How it works: scenes, the detector, mAP", expanded=False):
        st.markdown(
            "- **Scenes.** Up to a few shapes (circle, square, triangle, ring, cross) of any bright colour at random "
            "places, sizes, angles and overlaps on a textured background. A box is the tight box of the pixels an "
            "object still shows; every object keeps at least 60% of its pixels visible.\n"
            "- **Detector.** torchvision's Faster R-CNN on our ResNet-18 with a feature pyramid over layer2-4: a "
            "region "
            "proposal network suggests boxes, each box's features are pooled to 7x7 (RoIAlign) and two fully "
            "connected layers give its class and a refined box. The slide's Fast R-CNN is the same head on proposals "
            "from selective search.\n"
            "- **Two runs, one recipe.** The same scenes, epochs, learning rate and initial detection layers; only the "
            "encoder's start differs (and, if you choose, which of the pretrained encoder's stages train).\n"
            "- **mAP.** For each class, detections sorted by score trace precision against recall; the area is the "
            "average precision (AP). mAP@0.5 counts a detection right when its box overlaps a true one by IoU >= 0.5; "
            "mAP averages over IoU 0.5 to 0.95 (COCO's main number, torchmetrics with the COCO evaluation).\n"
            "- **The starter weights were pre-trained on generated fractals, not photographs**: this run measures what "
            "they are worth here. With ImageNet weights cached, choose them under *Pretrained weights*.")
        if cfg is not None:
            st.image(_examples(cfg.size, cfg.classes, cfg.max_objects, cfg.seed), width=3 * cfg.size)
            st.caption("Four training scenes with their true boxes.")
    st.info(MEASURED)


def _loss_parts(events: list[Event]) -> go.Figure | None:
    """Each of Faster R-CNN's four losses per step, both networks (sent with every epoch's snapshot)."""
    snaps = [e for e in events if isinstance(e, Snapshot) and "losses" in e.arrays]
    if not snaps:
        return None
    fig = make_subplots(rows=1, cols=len(dt.LOSSES), subplot_titles=[dt.LOSS_NAMES[k] for k in dt.LOSSES])
    for s in SERIES:
        rows = [e.arrays["losses"] for e in snaps if e.series == s]
        if not rows:
            continue
        y = np.concatenate(rows)                                   # (steps, 4)
        for j in range(len(dt.LOSSES)):
            fig.add_scatter(x=np.arange(1, len(y) + 1), y=y[:, j], name=NAMES[s], legendgroup=s, showlegend=j == 0,
                            line=dict(color=COLOURS[s], width=1), row=1, col=j + 1)
    fig.update_layout(height=260, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="step")
    return fig


def _scenes_row(images: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray | None,
                classes: tuple[str, ...], label: str, min_score: float = 0.5) -> None:
    """Scenes side by side with their boxes; `scores` None for the true boxes."""
    truth = scores is None
    sc = np.ones(labels.shape, np.float32) if truth else scores
    st.image([dt.draw(images[i], boxes[i], labels[i], sc[i], classes, min_score, truth=truth)
              for i in range(len(images))], width=200, caption=[label] * len(images))


def live(events: list[Event], cfg: dt.Config) -> None:
    weights_lines(events)
    if any(e.kind in ("step", "epoch") for e in events):
        st.plotly_chart(two_curves(events, "map50", "mAP@0.5", "sum of the four losses"), key="det_curves")
    parts = _loss_parts(events)
    if parts is not None:
        st.plotly_chart(parts, key="det_parts")
        st.caption("Faster R-CNN's four losses per step, drawn after each epoch: the box head's classification and "
                   "box regression, the proposal network's object-or-not and its box regression.")
    classes = SHAPES[:cfg.classes]
    snaps = {s: next((e for e in reversed(events) if isinstance(e, Snapshot) and e.series == s), None) for s in SERIES}
    first = next((snap for snap in snaps.values() if snap is not None), None)
    if first is None:
        return
    _scenes_row(first.arrays["images"], first.arrays["truth_boxes"], first.arrays["truth_labels"], None, classes,
                "true boxes")
    for s, snap in snaps.items():
        if snap is not None:
            a = snap.arrays
            _scenes_row(a["images"], a["boxes"], a["labels"], a["scores"], classes, f"{NAMES[s]}, epoch {snap.epoch}")
    st.caption("Validation scenes: the true boxes, then each network's detections scoring at least 0.5 after its "
               "latest epoch.")


def results(res: LabResults) -> None:
    f, cfg = res.final, dt.Config(**res.config)
    st.subheader("Pretrained encoder vs from scratch")
    c = st.columns(2)
    m50, m = compare(f, "map50"), compare(f, "map")
    c[0].metric("mAP@0.5 (pretrained vs scratch)", f"{m50.pretrained:.2f} vs {m50.scratch:.2f}", f"{m50.gap:+.2f}")
    c[1].metric("mAP@0.5:0.95", f"{m.pretrained:.2f} vs {m.scratch:.2f}", f"{m.gap:+.2f}")
    verdict(m50, "mAP@0.5", f"{cfg.epochs} epochs over {cfg.scenes} scenes each")
    if f.get("weights_note"):
        st.info(f["weights_note"])
    classes = list(f["classes"])
    fig = go.Figure()
    for s in SERIES:
        for key, dash in (("ap50", ""), ("ap", "x")):
            vals = [f[s]["per_class"][c_][key] for c_ in classes]
            fig.add_bar(x=classes, y=[v if v is not None else 0 for v in vals],
                        name=f"{NAMES[s]}: AP{'@0.5' if key == 'ap50' else '@0.5:0.95'}",
                        marker=dict(color=COLOURS[s], pattern_shape=dash))
    fig.update_layout(barmode="group", height=320, margin=dict(t=40, b=10), title="Average precision per class "
                      "(plain: IoU 0.5; hatched: IoU 0.5:0.95)", yaxis=dict(range=[0, 1], title="AP"),
                      legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(fig, key="det_per_class")
    a = res.arrays
    min_score = st.slider("Show detections scoring at least", 0.05, 0.95, 0.5, 0.05, key="det_min_score")
    for k in range(0, len(a["images"]), 4):
        sl = slice(k, k + 4)
        _scenes_row(a["images"][sl], a["truth_boxes"][sl], a["truth_labels"][sl], None, tuple(classes), "true boxes")
        for s in SERIES:
            _scenes_row(a["images"][sl], a[f"{s}_boxes"][sl], a[f"{s}_labels"][sl], a[f"{s}_scores"][sl],
                        tuple(classes), NAMES[s], min_score)
