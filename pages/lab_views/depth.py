"""Training Lab: plain vs residual, the degradation problem (layout only; see core.lab.depth)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.lab import depth as dp
from core.lab.common import LabResults
from core.train.events import Epoch, Event
from pages.lab_views.charts import COLOURS, TABLE2_CAPTION, curves, live_figure, readable, resnet_table2
from pages.lab_views.widgets import knob_widgets

INTRO = ("Does a deeper network train better? He et al. found that a deeper *plain* network has a higher "
         "*training* error than a shallower one (degradation: an optimisation problem, not overfitting), while "
         "the same depth with shortcuts does not. Here the paper's CIFAR networks (depth 6n+2) train one after "
         "another with the same recipe, and every epoch measures the training error as well as the validation error.")
DEPTHS = [8, 14, 20, 32, 44, 56, 110]
# Measured with the defaults on a 2-core CPU, otherwise idle (seeds 0 and 1 alike); see bench/ and the README.
CPU_NOTE = ("With the defaults (depths 20 and 56, width 8, digits at 16 px, 10 epochs) the effect shows on a 2-core "
            "CPU in about 75 s: the 56-layer plain network ends with a far higher training error than the 20-layer "
            "one, while the 56-layer residual network trains as well as the 20-layer one. A run this short "
            "exaggerates the gap: the deep plain network has barely begun to learn. The paper's run (CIFAR-10 at "
            "32 px, width 16, about 164 epochs; its Figure 6) ends with plain-56 a few points worse than plain-20: "
            "a GPU job, e.g. `python -m core lab depth --data shapes --per-class 2000 --size 32 --width 16 "
            "--epochs 100 --device cuda` (not measured here).")


def controls(d: dict[str, Any]) -> dict[str, Any]:
    knob = dp.Config.KNOBS["depths"]
    try:
        linked = list(dp.parse_depths(d["depths"]))
    except ValueError:
        linked = []
    options = sorted(set(DEPTHS) | set(linked))        # the usual depths, and any a link asked for
    depths = st.multiselect(knob.label, options, linked or [20, 56], key="dp_depths", help=knob.help)
    out = {"depths": ",".join(str(x) for x in sorted(depths)) or "20"}
    return out | knob_widgets(dp.Config, d, ["width", "data", "size", "epochs", "lr", "augment"], "dp")


def explain(cfg: dp.Config | None) -> None:
    c1, c2 = st.columns([1, 1])
    with c1:
        st.plotly_chart(resnet_table2(), key="dp_table2")
        st.caption(TABLE2_CAPTION + " The paper's CIFAR-10 runs (Figure 6) show the same for 20 to 56 layers, in "
                   "training error too.")
    with c2:
        if cfg is not None:
            classes = 8 if cfg.data == "shapes" else 10
            rows = [{"depth": d, "n": dp.blocks_per_stage(d), "3x3 convs": 6 * dp.blocks_per_stage(d) + 1,
                     "parameters": f"{dp.param_formula(d, cfg.width, classes):,}"} for d in dp.parse_depths(cfg.depths)]
            # a static table: it wraps to the column's width, where a data frame of four columns ran past it
            st.table(pd.DataFrame(rows), hide_index=True)
            st.caption(f"Each depth is 6n+2: n blocks per stage. Stages of {cfg.width}, {2 * cfg.width}, {4 * cfg.width} "
                       f"filters on {cfg.size}, {cfg.size // 2}, {cfg.size // 4} px maps. Plain and residual have the "
                       "same parameters: the shortcuts are the paper's option A (identity, zero-padded channels), "
                       "which has none.")
    st.info(CPU_NOTE)


def _errors(events: list[Event]) -> go.Figure:
    """Training error (solid) and validation error (dotted) per epoch, one colour per network."""
    fig = go.Figure()
    series = list(dict.fromkeys(e.series for e in events if isinstance(e, Epoch)))
    for s in series:
        ep = [e for e in events if isinstance(e, Epoch) and e.series == s]
        colour = COLOURS.get(s)
        fig.add_scatter(x=[e.epoch for e in ep], y=[e.metrics["train_error"] for e in ep], name=f"{s}: training",
                        mode="lines+markers", line=dict(color=colour, width=3))
        fig.add_scatter(x=[e.epoch for e in ep], y=[e.metrics["val_error"] for e in ep], name=f"{s}: validation",
                        mode="lines", line=dict(color=colour, dash="dot"))
    fig.update_layout(height=420, margin=dict(t=60, b=10), title="Error per epoch<br>(solid: training, dotted: validation)",
                      xaxis=dict(title="epoch", dtick=1, rangemode="tozero"),
                      yaxis=dict(title="error", tickformat=".0%", range=[0, 1]), legend=dict(orientation="h", y=-0.2))
    return readable(fig)


def live(events: list[Event], cfg: dp.Config) -> None:
    if any(isinstance(e, Epoch) for e in events):
        st.plotly_chart(live_figure("dp_errors", events, lambda: _errors(events)), key="dp_errors")
    if any(e.kind == "step" for e in events):
        with st.expander("Training loss per step", expanded=False):
            st.plotly_chart(live_figure("dp_curves", events, lambda: curves(
                events, "val_error", "error", percent=True, loss_title="cross-entropy", metric_range=(0, 1))),
                key="dp_curves")
    st.caption(f"Training error: a fixed set of (up to) {dp.TRAIN_SUBSET} training images, in eval mode, after "
               "BatchNorm's statistics are recomputed on them (so a lagging running average cannot make a network look "
               "worse than it is).")


def results(res: LabResults) -> None:
    final = res.final
    names = [str(n) for n in res.arrays["names"]]
    rows = [{"network": n, "training error": final[n]["train_error"], "validation error": final[n]["val_error"],
             "parameters": final[n]["params"], "seconds": final[n]["seconds"]} for n in names]
    st.subheader("Final errors")
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "training error": st.column_config.NumberColumn(format="percent"),
        "validation error": st.column_config.NumberColumn(format="percent"),
        "parameters": st.column_config.NumberColumn(format="localized")})
    fig = go.Figure([go.Bar(name=label, x=names, y=[final[n][key] for n in names])
                     for label, key in (("training error", "train_error"), ("validation error", "val_error"))])
    fig.update_layout(barmode="group", height=320, margin=dict(t=40, b=10), yaxis=dict(tickformat=".0%", range=[0, 1]),
                      title="After the last epoch", legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(readable(fig), key="dp_final")
    deg = final.get("degradation", {})
    err = {n: final[n]["train_error"] for n in names}
    depths = sorted({int(n.removeprefix("plain").removeprefix("resnet")) for n in names})
    if len(depths) >= 2:
        lo, hi = depths[0], depths[-1]
        plain = (f"plain{hi} {err[f'plain{hi}']:.1%} vs plain{lo} {err[f'plain{lo}']:.1%}")
        res_ = (f"resnet{hi} {err[f'resnet{hi}']:.1%} vs resnet{lo} {err[f'resnet{lo}']:.1%}")
        if deg.get("plain") and not deg.get("resnet"):
            st.success(f"Degradation showed: the deeper plain network trains worse ({plain}), the deeper residual "
                       f"network does not ({res_}).")
        elif deg.get("plain"):
            st.warning(f"The deeper plain network trains worse ({plain}), but so does the deeper residual one "
                       f"({res_}) in this short run: more epochs let the residual network catch up.")
        else:
            st.warning(f"Degradation did not show in this run ({plain}; {res_}). Try more epochs or greater depths.")
    st.caption(f"Training error measured on {final['train_subset']} fixed training images: \"worse\" means by more than "
               "two standard errors of the difference (and at least one percentage point).")
