"""Charts the lab tasks share: loss per step and validation metrics per epoch, per series; the text
style every Lab chart uses; and a live view's figures kept between the fragment's ticks."""

from __future__ import annotations

import time
from typing import Callable

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.design import PLAIN_VS_RESNET
from core.train.events import Epoch, Event, Step

COLOURS = {"": "#1f77b4", "unet": "#d62728", "autoencoder": "#1f77b4", "plain20": "#9467bd",
           "plain56": "#d62728", "resnet20": "#2ca02c", "resnet56": "#17becf"}
TEXT = "#111111"          # the theme's text colour (.streamlit/config.toml): Streamlit's chart theme greys it
TEXT_PX = 14              # every text on a chart, in CSS pixels (a 1024x768 projector shows them as they are)
TITLE_PX = 16
REBUILD_S = 3.0           # a live figure waits this long for new training steps; epochs redraw it at once


def readable(fig: go.Figure) -> go.Figure:
    """Projector-sized, dark text everywhere on `fig`: titles, axis titles, tick labels, legend,
    subplot titles and bar labels (Streamlit's own chart theme draws ticks at 12.75 px in pale grey)."""
    font = dict(size=TEXT_PX, color=TEXT)
    fig.update_layout(font=font, title_font=dict(size=TITLE_PX, color=TEXT), legend_font=font,
                      legend_title_font=font, hoverlabel_font_size=TEXT_PX)
    fig.update_xaxes(tickfont=font, title_font=font)
    fig.update_yaxes(tickfont=font, title_font=font)
    fig.update_annotations(font=dict(size=TEXT_PX + 1, color=TEXT))
    fig.update_traces(textfont=font, selector=dict(type="bar"))
    return fig


def curves(events: list[Event], metric: str, metric_title: str, percent: bool = False,
           loss_title: str = "loss", metric_range: tuple[float, float] | None = None) -> go.Figure:
    """Training loss per step (left) and a validation metric per epoch (right), one line per series.
    `metric_range` fixes the right axis from the start (accuracy and IoU: 0 to 1); without it the axis
    starts at zero and, until the first epoch, shows no numbers at all (plotly would invent -1 to 4)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss per step", "validation, per epoch"),
                        horizontal_spacing=0.14)
    series = list(dict.fromkeys(e.series for e in events if isinstance(e, (Step, Epoch))))
    any_epoch = False
    for s in series:
        steps = [e for e in events if isinstance(e, Step) and e.series == s]
        epochs = [e for e in events if isinstance(e, Epoch) and e.series == s]
        any_epoch |= bool(epochs)
        colour = COLOURS.get(s)
        name = s or "model"
        fig.add_scatter(x=[e.step for e in steps], y=[e.loss for e in steps], name=f"{name}: train loss",
                        line=dict(color=colour), row=1, col=1)
        fig.add_scatter(x=[e.epoch for e in epochs], y=[e.metrics.get(metric, e.val_loss) if metric != "loss"
                                                          else e.val_loss for e in epochs],
                        name=f"{name}: val {metric_title}", mode="lines+markers", line=dict(color=colour, dash="dot"),
                        row=1, col=2)
    fig.update_xaxes(title_text="step", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1, rangemode="tozero", row=1, col=2)
    fig.update_yaxes(title_text=loss_title, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text=metric_title, tickformat=".0%" if percent else None, row=1, col=2)
    if metric_range is not None:
        fig.update_yaxes(range=list(metric_range), autorange=False, row=1, col=2)
    elif any_epoch:
        fig.update_yaxes(rangemode="tozero", row=1, col=2)
    else:
        fig.update_yaxes(showticklabels=False, row=1, col=2)
    if not any_epoch:
        fig.update_xaxes(range=[0.5, 1.5], row=1, col=2)
        fig.add_annotation(text="after the first epoch", x=0.5, y=0.5, xref="x2 domain", yref="y2 domain",
                           showarrow=False)
    fig.update_layout(height=360, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return readable(fig)


def live_figure(key: str, events: list[Event], build: Callable[[], go.Figure]) -> go.Figure:
    """`build()`, remade only when the run has something new to draw: at once for a new epoch, snapshot
    or end, after REBUILD_S seconds for new training steps alone. A live view redraws once a second
    while its run trains; most of those ticks now only send the figure they already have."""
    memo = st.session_state.setdefault("lab_live_figures", {})
    n_marks = sum(1 for e in events if e.kind != "step")
    old = memo.get(key)
    now = time.monotonic()
    if old is not None and old[0] == id(events):
        _, n_events, n_old_marks, made, fig = old
        if n_events == len(events) or (n_old_marks == n_marks and now - made < REBUILD_S):
            return fig
    fig = build()
    memo[key] = (id(events), len(events), n_marks, now, fig)
    return fig


def resnet_table2(height: int = 300) -> go.Figure:
    """The ResNet paper's Table 2 (ImageNet top-1 error, plain vs ResNet at 18 and 34 layers) as
    horizontal bars from zero, each labelled with its value: from zero the bars look alike, and the
    numbers carry the 0.6-point and 2.9-point differences (TABLE2_CAPTION says so). Horizontal, so
    that the labels have room in half a page's width."""
    rows = [(f"{name}-{depth.split()[0]}", v[i], colour) for depth, v in PLAIN_VS_RESNET.items()
            for i, (name, colour) in enumerate([("plain", COLOURS["plain56"]), ("ResNet", COLOURS["resnet20"])])]
    fig = go.Figure(go.Bar(y=[r[0] for r in rows], x=[r[1] for r in rows], orientation="h",
                           marker_color=[r[2] for r in rows], text=[f"{r[1]:.2f}%" for r in rows],
                           textposition="outside", cliponaxis=False, showlegend=False))
    fig.update_layout(height=height, margin=dict(t=60, b=10, l=10, r=10),
                      title=dict(text="ResNet paper, Table 2:<br>ImageNet top-1 error", x=0),
                      xaxis=dict(title="top-1 error (%)", range=[0, 36]),
                      yaxis=dict(autorange="reversed"), uniformtext=dict(minsize=TEXT_PX, mode="show"))
    return readable(fig)


TABLE2_CAPTION = ("The axis starts at 0, so the bars look alike: the effect is in the numbers. Going from 18 to 34 "
                  "layers, the plain net gets 0.60 points worse (27.94% -> 28.54%) and the ResNet 2.85 points better "
                  "(27.88% -> 25.03%).")
