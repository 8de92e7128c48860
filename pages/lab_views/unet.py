"""Training Lab: U-Net vs autoencoder on thin structures (layout only; see core.lab.unet)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.lab import unet as un
from core.lab.common import LabResults
from core.train.events import Event, Snapshot
from pages.lab_views.charts import COLOURS, curves, live_figure, readable
from pages.lab_views.widgets import knob_widgets

INTRO = ("The lecture: an autoencoder loses fine detail at its bottleneck; U-Net's skip connections hand the "
         "decoder the encoder's full-resolution maps. Here both segment blobs (coarse) and curves one pixel wide "
         "(fine). The two networks are identical layer for layer; in the autoencoder the four concatenations "
         "receive zeros, so everything it draws has passed the bottleneck.")


def controls(d: dict[str, Any]) -> dict[str, Any]:
    return knob_widgets(un.Config, d, ["images", "size", "n_filters", "epochs", "lr"], "un")


def explain(cfg: un.Config | None) -> None:
    if cfg is None:
        return
    with st.expander("The data: a few generated examples", expanded=False):
        x, m, thin = un.thin_structures(4, cfg.size, cfg.seed)
        st.image([*(x[:, 0].numpy()), *(m[:, 0].numpy().astype(np.float32))], width=96,
                 caption=["image"] * 4 + ["mask"] * 4)
        st.caption("Curves one pixel wide and blobs (radius 4-8 pixels at 32x32), brighter than a textured "
                   "background, plus noise. The same seed gives the same images.")
    ch, h, w = un.bottleneck(cfg)
    st.caption(f"The bottleneck at these settings: {h}x{w} pixels with {ch} channels ({ch * h * w:,} numbers for "
               f"{cfg.size * cfg.size:,} pixels). A blob is still a few pixels of it; where a one-pixel curve runs is "
               "not, unless a skip connection brings it.")


def _rows(images: np.ndarray, truth: np.ndarray, preds: dict[str, np.ndarray], n: int) -> None:
    """One row per example: the image, the true mask, then each network's mask."""
    for k in range(min(n, len(images))):
        st.image([images[k].astype(np.float32), truth[k].astype(np.float32),
                  *(p[k].astype(np.float32) for p in preds.values())], width=84,
                 caption=["image", "truth", *preds])


def _masks(snap_u: Snapshot | None, snap_a: Snapshot | None) -> None:
    base = snap_u or snap_a
    if base is None:
        return
    preds = {name: snap.arrays["prediction"] for name, snap in (("autoencoder", snap_a), ("U-Net", snap_u))
             if snap is not None}
    st.caption("Validation images and predicted masks (probability, white = 1) after epoch "
               + ", ".join(f"{snap.epoch} ({name})" for name, snap in (("autoencoder", snap_a), ("U-Net", snap_u))
                           if snap is not None) + ".")
    _rows(base.arrays["image"], base.arrays["truth"], preds, 4)


def live(events: list[Event], cfg: un.Config) -> None:
    if any(e.kind in ("step", "epoch") for e in events):
        st.plotly_chart(live_figure("un_curves", events, lambda: curves(
            events, "iou", "IoU", loss_title="binary cross-entropy", metric_range=(0, 1))), key="un_curves")
    last = {s: next((e for e in reversed(events) if isinstance(e, Snapshot) and e.series == s), None)
            for s in un.SERIES}
    _masks(last["unet"], last["autoencoder"])


def results(res: LabResults) -> None:
    f = res.final
    u, a = f["unet"], f["autoencoder"]
    st.subheader("What the skips keep")
    parts = (("whole mask", "iou"), ("blobs", "blob_iou"), ("thin curves", "thin_iou"))
    # U-Net's figure as the value, its lead over the autoencoder as the delta ("0.89 vs 0.75" was cut at 1024 px);
    # each metric as wide as its text, a row that does not fit wraps
    with st.container(horizontal=True):
        for label, key in parts:
            st.metric(f"U-Net IoU, {label}", f"{u[key]:.2f}", f"{u[key] - a[key]:+.2f}", width="content",
                      delta_arrow="off" if round(u[key] - a[key], 2) == 0 else "auto")
    st.caption("The deltas are U-Net minus the autoencoder, whose IoU was "
               + ", ".join(f"{a[key]:.2f} ({label})" for label, key in parts) + ".")
    ch, h, w = un.bottleneck(un.Config(**res.config))
    st.caption(f"Both networks passed the same {h}x{w}x{ch} bottleneck; only U-Net also had its skips. The "
               "autoencoder keeps the blobs and loses the curves: fine detail does not survive the bottleneck.")
    fig = go.Figure()
    for name, vals in (("autoencoder", a), ("unet", u)):
        fig.add_bar(x=["IoU", "IoU, blobs", "IoU, thin curves", "Dice"],
                    y=[vals["iou"], vals["blob_iou"], vals["thin_iou"], vals["dice"]],
                    name="U-Net" if name == "unet" else "autoencoder", marker_color=COLOURS[name])
    fig.update_layout(barmode="group", height=320, yaxis=dict(range=[0, 1], title="score (1 = perfect)"),
                      margin=dict(t=40, b=10), title="Validation masks, threshold 0.5", legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(readable(fig), key="un_final")
    arr = res.arrays
    st.caption("Final masks (threshold 0.5) on validation images:")
    _rows(arr["images"] / 255, arr["truth"], {"autoencoder": arr["autoencoder"], "U-Net": arr["unet"]}, 6)
