"""Training Lab: the lecture's convolutional autoencoder (layout only; see core.lab.autoencoder)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.lab import autoencoder as ae
from core.lab.common import LabResults
from core.train.events import Event, Snapshot
from pages.lab_views.charts import curves, live_figure, readable
from pages.lab_views.widgets import knob_widgets

INTRO = ("An autoencoder squeezes each digit through a bottleneck of a few numbers and rebuilds it from them: "
         "the smaller the bottleneck, the more detail is lost. At 49 numbers (the default) the network is exactly "
         "the lecture's Keras model (28x28x1 -> Dense(49) -> 28x28x1); at any other width one layer differs: "
         "the code is Dense(576 -> width) and the decoder starts with Dense(width -> 49). The digits are "
         "scikit-learn's 8x8 scans scaled up to 28x28, so they look blurrier than MNIST's.")


def controls(d: dict[str, Any]) -> dict[str, Any]:
    return knob_widgets(ae.Config, d, ["bottleneck", "noise", "epochs", "lr"], "ae")


def explain(cfg: ae.Config | None) -> None:
    with st.expander("Transposed convolution, by hand (the lecture's upsampling; \"sometimes mistakenly called "
                     "deconvolution\")", expanded=False):
        st.markdown("Each input value scatters a copy of the kernel, scaled by that value, into the output at "
                    "`stride` steps; where copies overlap they add up. It is the gradient of a strided "
                    "convolution, not its inverse: nothing is *de*-convolved.")
        c1, c2, c3 = st.columns([1, 1, 1])
        x = np.array(c1.data_editor(np.array([[1.0, 2.0], [3.0, 4.0]]), key="ae_tx", hide_index=True,
                                    width="stretch"), dtype=float)
        k = np.array(c2.data_editor(np.ones((3, 3)), key="ae_tk", hide_index=True, width="stretch"), dtype=float)
        stride = c3.number_input("stride", 1, 3, 2, key="ae_ts")
        pad = c3.number_input("padding", 0, 1, 0, key="ae_tp")
        if not (np.isfinite(x).all() and np.isfinite(k).all()):
            st.error("Every cell needs a number.")
            return
        tc = ae.transposed_conv(x, k, int(stride), int(pad))
        st.markdown(f"Output size: {tc.size_formula} → **{tc.output.shape[0]}x{tc.output.shape[1]}**")
        cols = st.columns(len(tc.pieces) + 1)
        for col, (i, j, piece) in zip(cols, tc.pieces):
            col.caption(f"input ({i},{j}) = {x[i, j]:g} × kernel")
            col.dataframe(piece, hide_index=True)
        cols[-1].caption("sum = output")
        cols[-1].dataframe(tc.output, hide_index=True)


def _grid(inputs: np.ndarray, outputs: np.ndarray, caption: str) -> None:
    """Inputs on one row, their reconstructions right below."""
    st.image([np.clip(x.astype(np.float32), 0, 1) for x in inputs], width=56, caption=["input"] * len(inputs))
    st.image([np.clip(x.astype(np.float32), 0, 1) for x in outputs], width=56, caption=["rebuilt"] * len(outputs))
    st.caption(caption)


def live(events: list[Event], cfg: ae.Config) -> None:
    if any(e.kind in ("step", "epoch") for e in events):
        st.plotly_chart(live_figure("ae_curves", events, lambda: curves(
            events, "mse", "mean squared error", loss_title="binary cross-entropy")), key="ae_curves")
    snap = next((e for e in reversed(events) if isinstance(e, Snapshot)), None)
    if snap:
        _grid(snap.arrays["input"], snap.arrays["output"],
              f"Eight validation digits and their reconstructions after epoch {snap.epoch} "
              f"(bottleneck {cfg.bottleneck}{', noisy inputs' if cfg.noise else ''}).")


def results(res: LabResults) -> None:
    st.subheader("The code space")
    a = res.arrays
    labels = a["labels"].astype(str)
    how = "the code itself" if bool(a["projection"][0]) else "the first two principal components of the code"
    fig = px.scatter(x=a["latent_2d"][:, 0], y=a["latent_2d"][:, 1], color=labels,
                     category_orders={"color": [str(i) for i in range(10)]},
                     labels={"x": "code 1" if "itself" in how else "PC 1", "y": "code 2" if "itself" in how else "PC 2",
                             "color": "digit"})
    fig.update_layout(height=440, title=f"Validation digits in the code space<br>({how})", margin=dict(t=70, b=10))
    st.plotly_chart(readable(fig), key="ae_latent")
    st.subheader("Walking between two digits")
    c1, c2 = st.columns(2)
    a_digit = c1.selectbox("From the digit", range(10), 1, key="ae_from")
    b_digit = c2.selectbox("To the digit", range(10), 7, key="ae_to")
    i, j = (int(np.flatnonzero(a["labels"] == d)[0]) for d in (a_digit, b_digit))   # first of each in validation
    strip = ae.interpolate(res, i, j, 8)
    st.image([np.clip(s, 0, 1) for s in strip], width=64, caption=[str(a_digit)] + [""] * 6 + [str(b_digit)])
    st.caption("The decoder's output for codes on the straight line between the two digits' codes.")
    fig = go.Figure(go.Bar(x=["validation loss (BCE)", "mean squared error"],
                           y=[res.final["val_loss"], res.final["val_mse"]]))
    fig.update_layout(height=260, margin=dict(t=40, b=10), title=f"Final, bottleneck {res.final['bottleneck']}",
                      yaxis=dict(title="per pixel", rangemode="tozero"))
    st.plotly_chart(readable(fig), key="ae_final")


def compare(runs: list[LabResults]) -> None:
    """This session's finished runs side by side: validation error per bottleneck width, and the same
    validation digits rebuilt by each run."""
    c = ae.compare_widths(runs)
    st.subheader("Your runs side by side")
    fig = go.Figure()
    for noise in sorted(set(c.noise)):
        rows = [i for i, n in enumerate(c.noise) if n == noise]
        fig.add_scatter(x=[c.bottlenecks[i] for i in rows], y=[c.val_mse[i] for i in rows], mode="lines+markers",
                        name="clean inputs" if noise == 0 else f"noise {noise:g}",
                        hovertemplate="bottleneck %{x}: %{y:.4f}<extra></extra>")
    fig.update_layout(height=340, margin=dict(t=50, b=10), title="Validation mean squared error per bottleneck width",
                      xaxis=dict(title="bottleneck (numbers in the code)", type="log", tickvals=sorted(set(c.bottlenecks)),
                                 ticktext=[str(b) for b in sorted(set(c.bottlenecks))]),
                      yaxis=dict(title="per pixel", rangemode="tozero"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(readable(fig), key="ae_compare")
    if not len(c.digits):
        st.caption("These runs held out no digit in common (their seeds split the digits differently), so their "
                   "reconstructions cannot be set side by side.")
        return
    rows = [("input", c.digits)] + [(f"{b}{'' if n == 0 else f', noise {n:g}'}", r)
                                    for b, n, r in zip(c.bottlenecks, c.noise, c.rebuilt)]
    for label, images in rows:
        left, right = st.columns([1, 5], vertical_alignment="center")
        left.markdown(f"**{label}**")
        right.image([np.clip(x, 0, 1) for x in images], width=48)
    st.caption(f"The same {len(c.digits)} validation digits (top) rebuilt by each of your {len(c.order)} runs, by "
               "bottleneck width: the fewer numbers in the code, the more of each digit is lost.")
