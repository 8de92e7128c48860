"""Charts the lab tasks share: loss per step and validation metrics per epoch, per series."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.design import PLAIN_VS_RESNET
from core.train.events import Epoch, Event, Step

COLOURS = {"": "#1f77b4", "unet": "#d62728", "autoencoder": "#1f77b4", "plain20": "#9467bd",
           "plain56": "#d62728", "resnet20": "#2ca02c", "resnet56": "#17becf"}


def curves(events: list[Event], metric: str, metric_title: str, percent: bool = False,
           loss_title: str = "loss") -> go.Figure:
    """Training loss per step (left) and a validation metric per epoch (right), one line per series."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss per step", f"validation {metric_title} per epoch"))
    series = list(dict.fromkeys(e.series for e in events if isinstance(e, (Step, Epoch))))
    for s in series:
        steps = [e for e in events if isinstance(e, Step) and e.series == s]
        epochs = [e for e in events if isinstance(e, Epoch) and e.series == s]
        colour = COLOURS.get(s)
        name = s or "model"
        fig.add_scatter(x=[e.step for e in steps], y=[e.loss for e in steps], name=f"{name}: train loss",
                        line=dict(color=colour), row=1, col=1)
        fig.add_scatter(x=[e.epoch for e in epochs], y=[e.metrics.get(metric, e.val_loss) if metric != "loss"
                                                          else e.val_loss for e in epochs],
                        name=f"{name}: val {metric_title}", mode="lines+markers", line=dict(color=colour, dash="dot"),
                        row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=2)
    fig.update_yaxes(title_text=loss_title, row=1, col=1)
    fig.update_yaxes(title_text=metric_title, tickformat=".0%" if percent else None, row=1, col=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def resnet_table2(height: int = 320) -> go.Figure:
    """The ResNet paper's Table 2 (ImageNet top-1 error, plain vs ResNet at 18 and 34 layers) as bars
    from zero, each labelled with its value: from zero the bars look alike, and the numbers carry
    the 0.6-point and 2.9-point differences (TABLE2_CAPTION says so)."""
    fig = go.Figure([go.Bar(name=name, x=list(PLAIN_VS_RESNET), y=[v[i] for v in PLAIN_VS_RESNET.values()],
                            marker_color=colour, text=[f"{v[i]:.2f}%" for v in PLAIN_VS_RESNET.values()],
                            textposition="outside")
                     for i, (name, colour) in enumerate([("plain", COLOURS["plain56"]), ("ResNet", COLOURS["resnet20"])])])
    fig.update_layout(barmode="group", height=height, margin=dict(t=50, b=10),
                      title="ImageNet top-1 error (%), ResNet paper Table 2",
                      yaxis=dict(title="top-1 error (%)", range=[0, 35]))
    return fig


TABLE2_CAPTION = ("The axis starts at 0, so the bars look alike: the effect is in the numbers. Going from 18 to 34 "
                  "layers, the plain net gets 0.60 points worse (27.94% -> 28.54%) and the ResNet 2.85 points better "
                  "(27.88% -> 25.03%).")
