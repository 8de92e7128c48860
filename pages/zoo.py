"""Model Zoo: accuracy against operations for every classification model torchvision ships."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.figures import zoo_groups, zoo_scatter
from core.zoo import zoo_rows
from core.train.compute import ComputeConfig
from pages.common import computing, device, follow_compute, require_router, start_compute

require_router()
ss = st.session_state


@st.cache_data
def _zoo() -> pd.DataFrame:
    return pd.DataFrame(zoo_rows())


CPU_GMACS_CAP = 20   # the largest model the latency timer runs on a CPU (ResNet-152 is 11.5, VGG-19 19.6)

st.title("Model Zoo")
df = _zoo()
others = df[df.resolution != 224]
st.caption("Top-1 ImageNet accuracy against operations for one forward pass, blob size proportional to "
           "parameters, as on the lecture's \"comparing complexity\" slide. Numbers are torchvision's weights "
           "metadata (read offline); its \"GFLOPS\" are multiply-accumulates, shown here as GMACs, each for one "
           f"image at the resolution the model's weights use: 224x224 for {len(df) - len(others)} of the "
           f"{len(df)} models, {others.resolution.min()} to {others.resolution.max()} pixels square for the "
           "others (the table's \"resolution\" column).")
y0, y1 = int(df.year.min()), int(df.year.max())
years = st.slider("Published", y0, y1, (y0, y1), key="zoo_years")
c = st.columns(2)
logx = c[0].toggle("Log GMACs", value=True, key="zoo_log")
only = c[1].toggle("Lecture models only", value=False, key="zoo_lecture")
view = df[(df.year >= years[0]) & (df.year <= years[1])]
if only:
    view = view[view.in_lecture]
view = zoo_groups(view)
if view.empty:
    st.info("No model in this range of years.")
else:
    st.plotly_chart(zoo_scatter(view, logx), width="stretch", key="zoo_scatter")

st.subheader("All models")
table = view.rename(columns={"name": "model", "gmacs": "GMACs", "acc1": "acc@1", "acc5": "acc@5",
                             "file_mb": "file (MB)", "rf": "receptive field"})
table = table[["model", "family", "year", "resolution", "params", "GMACs", "acc@1", "acc@5", "file (MB)",
               "receptive field", "rf_whole"]].rename(columns={"rf_whole": "SE: sees whole image"})
st.dataframe(table, hide_index=True, width="stretch", height=420,
             column_config={"params": st.column_config.NumberColumn(format="localized")})
st.caption("Receptive field: at the last feature map before global pooling, from our analysis engine (unclipped, "
           "pixels). Blank for transformers, where attention lets every patch see the whole image. "
           "\"SE\": squeeze-and-excitation already made every unit depend on the whole image.")
st.download_button("Download CSV", table.to_csv(index=False), "model_zoo.csv", "text/csv",
                   icon=":material/download:")

st.subheader("Measured latency on this device")
dev = device()
choices = st.multiselect("Models to time", list(df.name),
                         ["alexnet", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "googlenet"],
                         key="zoo_lat_models", max_selections=12)
st.caption(f"Device: {dev.label}. Random weights (speed does not depend on the values); batch 1 and 32 at "
           "224x224, median and range of 5 runs after 2 warm-ups. Big models take tens of seconds on a laptop CPU.")
gmacs = dict(zip(df.name, df.gmacs))
too_big = [n for n in choices if dev.kind == "cpu" and gmacs[n] > CPU_GMACS_CAP]
timed = [n for n in choices if n not in too_big]
if too_big:
    # Even as a job, such a model would hold the one CPU job slot for minutes, every student's
    # training queued behind it.
    st.warning(f"Not timed on this CPU: {', '.join(f'{n} ({gmacs[n]:,.0f} GMACs)' for n in too_big)}. Models "
               f"above {CPU_GMACS_CAP} GMACs per image take minutes at batch 32 and would hold up everyone's "
               "runs; the dashboard times them when it runs on a GPU.")
st.button("Measure", key="zoo_lat_go", disabled=not timed or computing("zoo_latency"), on_click=start_compute,
          args=("zoo_latency", ComputeConfig.of("latency", f"timing {len(timed)} models", names=timed)))
follow_compute("zoo_latency")
if ss.get("zoo_latency"):
    label, res = dev.label, ss["zoo_latency"]
    lat = pd.DataFrame([{"name": r.name, "ms": r.batch1.median * 1e3, "lo": r.batch1.lo * 1e3,
                         "hi": r.batch1.hi * 1e3, "batch 1 (ms)": r.batch1.ms, "batch 32 (ms)": r.batch32.ms,
                         "images/s (batch 32)": round(32 / r.batch32.median, 1)} for r in res])
    lat = lat.merge(df[["name", "gmacs", "params"]], on="name")
    fig = go.Figure(go.Scatter(
        x=lat.gmacs, y=lat.ms, mode="markers+text", text=lat.name, textposition="middle right",
        marker=dict(size=12, color="#1f77b4"), cliponaxis=False,
        error_y=dict(type="data", symmetric=False, array=lat.hi - lat.ms, arrayminus=lat.ms - lat.lo)))
    fig.update_layout(height=480, font=dict(size=15), title=f"Latency vs operations on {label} (batch 1)",
                      xaxis=dict(type="log", title="GMACs per image"),
                      yaxis=dict(type="log", title="ms (median; bars: range)"),
                      margin=dict(t=60, l=70, r=60, b=60))
    st.plotly_chart(fig, width="stretch", key="zoo_latency_plot")
    st.dataframe(lat[["name", "batch 1 (ms)", "batch 32 (ms)", "images/s (batch 32)", "gmacs", "params"]],
                 hide_index=True, column_config={"params": st.column_config.NumberColumn(format="localized")})
    st.caption(f"Each figure: {res[0].batch1.runs} timed runs after 2 warm-up runs; median (fastest-slowest).")
    st.info("Operations do not predict time exactly: depthwise layers (MobileNet) move more memory per "
            "operation, and large dense layers (AlexNet, VGG) are cheap in MACs but heavy in weights.")
