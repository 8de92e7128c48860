"""Design Lab: the lecture's design choices side by side, each with its formula, the numbers
substituted, a chart and one sentence of interpretation. Defaults are the slides' examples."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import archs, registry, timm_archs
from core.design import (DEFAULT_STACK, DESIGN_TABS, LAYER_KINDS, analyze_stack, gap_vs_fc, residual_blocks,
                         separable_cost, stack_from_records, stack_from_text, stack_to_text, stack_vs_large)
from core.design_text import (BOTTLENECK_VERDICT, GAP_VERDICT, RESIDUAL_VERDICT, block_text, bottleneck_text,
                              gap_text, inception_text, separable_text, stack_text, stack_verdict)
from core.erf import cross_section, fit_gaussian, theoretical_box
from core.figures import (TABLE2_CAPTION, bottleneck_figure, gap_figure, resnet_table2, rf_grid_figure,
                          separable_figure, stack_cost_figure, styled)
from core.formatting import fmt_int, fmt_shape
from core.notes import inception_358m_note
from core.train.compute import ComputeConfig
from pages.common import cached_summary, computing, device, follow_compute, require_router, start_compute
from pages.own_model import timm_names

require_router()
ss = st.session_state
qp = st.query_params
st.title("Design Lab")
st.caption("Every number is a multiply-accumulate count (MACs, the lecture's \"ops\") or a weight count; "
           "change any input and everything below it updates.")

# The open tab is in the link (`/design?tab=Depthwise-separable`): a slide or the lecture path opens it.
tabs = st.tabs(list(DESIGN_TABS), key="tab", bind="query-params")


# --- 1 -----------------------------------------------------------------------------------------
with tabs[0]:
    st.subheader("A stack of small kernels vs one large kernel")
    c = st.columns(7)
    n = c[0].number_input("layers n", 1, 10, 3, key="s_n")
    k = c[1].number_input("kernel k", 1, 11, 3, key="s_k")
    big = c[2].number_input("large K", 1, 31, 7, key="s_big")
    ch = c[3].number_input("channels C", 1, 4096, 3, key="s_c")
    fmap = c[4].number_input("map D", 1, 512, 56, key="s_d")
    stride = c[5].number_input("stride", 1, 4, 1, key="s_s")
    dil = c[6].number_input("dilation", 1, 8, 1, key="s_dil")
    r = stack_vs_large(n, k, big, ch, fmap, stride, dil)
    st.markdown(stack_text(r))
    left, right = st.columns(2)
    left.plotly_chart(rf_grid_figure(r.rf_stack), key="rf_grid")
    right.plotly_chart(stack_cost_figure(r), key="stack_cost")
    st.info(stack_verdict(r))

# --- 2 -----------------------------------------------------------------------------------------
with tabs[1]:
    st.subheader("Depthwise-separable vs standard convolution")
    preset = st.radio("Example", ["The slide (3 → 128 channels, 5x5 map)", "MobileNet's 14x14x512 layer",
                                  "Your own"], horizontal=True, key="sep_preset")
    defaults = {"The slide (3 → 128 channels, 5x5 map)": (3, 128, 3, 5),
                "MobileNet's 14x14x512 layer": (512, 512, 3, 14)}.get(preset)
    c = st.columns(4)
    if defaults:
        m_, n_, dk, df = defaults
        c[0].metric("M (input channels)", m_)
        c[1].metric("N (filters)", n_)
        c[2].metric("D_K (kernel)", dk)
        c[3].metric("D_F (output map)", df)
    else:
        m_ = c[0].number_input("M (input channels)", 1, 4096, 64, key="sep_m")
        n_ = c[1].number_input("N (filters)", 1, 4096, 128, key="sep_n")
        dk = c[2].number_input("D_K (kernel)", 1, 11, 3, key="sep_dk")
        df = c[3].number_input("D_F (output map)", 1, 512, 28, key="sep_df")
    sc = separable_cost(m_, n_, dk, df)
    st.markdown(separable_text(sc))
    st.plotly_chart(separable_figure(sc), key="sep_bar")
    st.markdown("**Theory vs practice on this device.** The MAC ratio promises a speed-up; depthwise "
                "convolutions do so little arithmetic per value read that memory, not arithmetic, limits "
                "them. Measure it:")
    dev = device()
    chans = st.multiselect("Channel counts", [32, 64, 128, 256, 512, 1024], [64, 128, 256, 512], key="sep_ch")
    cc = st.columns(2)
    t_df = cc[0].number_input("Map size", 4, 112, 14, key="sep_tdf")
    batch = cc[1].number_input("Batch", 1, 64, 8, key="sep_batch")
    st.button(f"Measure on {dev.kind.upper()}", key="sep_go", disabled=not chans or computing("sep_result"),
              on_click=start_compute,
              args=("sep_result", ComputeConfig.of("separable", "depthwise vs standard timing", channels=sorted(chans),
                                                   dk=3, df=int(t_df), batch=int(batch))))
    follow_compute("sep_result")
    if ss.get("sep_result"):
        label, res = dev.label, ss["sep_result"]
        clear = [t for t in res if t.clear]
        fig = go.Figure(go.Scatter(x=[t.channels for t in res], y=[t.mac_ratio for t in res], name="MAC ratio (theory)",
                                   mode="lines+markers"))
        if clear:   # no measured line at all when every channel count's runs overlap
            fig.add_trace(go.Scatter(x=[t.channels for t in clear], y=[t.time_ratio for t in clear],
                                     name="time ratio (measured: median, bars = range)", mode="lines+markers",
                                     error_y=dict(type="data", symmetric=False,
                                                  array=[t.ratio_range[1] - t.time_ratio for t in clear],
                                                  arrayminus=[t.time_ratio - t.ratio_range[0] for t in clear])))
        st.plotly_chart(styled(fig.update_layout(title=f"separable / standard on {label}", xaxis_type="log",
                                               xaxis_title="channels (M = N)", yaxis_title="separable / standard")),
                        key="sep_time")
        runs = res[0].standard.runs
        st.dataframe(pd.DataFrame([{
            "channels": t.channels, "standard (ms)": t.standard.ms, "separable (ms)": t.separable.ms,
            "MAC ratio": round(t.mac_ratio, 3),
            "time ratio": (f"{t.time_ratio:.2f} ({t.ratio_range[0]:.2f}-{t.ratio_range[1]:.2f})" if t.clear
                           else "unclear: the runs overlap")} for t in res]), hide_index=True)
        st.caption(f"Each layer: {runs} timed runs after 2 warm-up runs; median (fastest-slowest).")
        unclear = [str(t.channels) for t in res if not t.clear]
        if unclear:
            st.warning(f"At {', '.join(unclear)} channels the two layers' timings overlap: the spread between runs "
                       "is larger than the difference, so no ratio is claimed. Measure again, or with a larger batch "
                       "or map.")

# --- 3 -----------------------------------------------------------------------------------------
with tabs[2]:
    st.subheader("1x1 convolutions as a bottleneck")
    naive = cached_summary("bottleneck_1x1", (480, 14, 14), ())
    reduced = cached_summary("bottleneck_1x1", (480, 14, 14), (("reduce", True),))
    st.markdown(bottleneck_text(naive, reduced))
    a = cached_summary("inception_module", (256, 28, 28), ())
    b = cached_summary("inception_module", (256, 28, 28), (("reductions", True),))
    st.plotly_chart(bottleneck_figure(naive.totals.macs, reduced.totals.macs, a.totals.macs, b.totals.macs),
                    key="bneck")
    st.markdown(inception_text(a, b))
    st.warning(inception_358m_note())  # both readings of the slide's 358M, computed
    st.info(BOTTLENECK_VERDICT)

# --- 4 -----------------------------------------------------------------------------------------
with tabs[3]:
    st.subheader("Global average pooling vs a fully connected head")
    c = st.columns(3)
    gh = c[0].number_input("map H = W", 1, 64, 7, key="gap_h")
    gc = c[1].number_input("channels", 1, 8192, 1024, key="gap_c")
    go_ = c[2].number_input("FC outputs", 1, 8192, 1024, key="gap_o")
    g = gap_vs_fc(gh, gh, gc, go_)
    st.markdown(gap_text(g, gh, gc, go_))
    st.plotly_chart(gap_figure(g), key="gap")
    st.info(GAP_VERDICT)

# --- 5 -----------------------------------------------------------------------------------------
with tabs[4]:
    st.subheader("Plain vs residual")
    st.caption("Defaults: the ResNet paper's Figure 5, a 64-channel basic block (ResNet-34) next to a "
               "256-channel bottleneck block (ResNet-50), which cost about the same.")
    c = st.columns(5)
    rb = c[0].number_input("basic block channels", 1, 4096, 64, key="res_b")
    rin = c[1].number_input("bottleneck input channels", 1, 4096, 256, key="res_in")
    rw = c[2].number_input("bottleneck width", 1, 1024, 64, key="res_w")
    rs = c[3].selectbox("stride", [1, 2], key="res_s")
    rd = c[4].number_input("map size", 1, 224, 56, key="res_d")
    blocks = residual_blocks(rin, rw, rs, rd, basic_channels=rb)
    for blk, (b_in, b_out) in zip(blocks, [(rb, rb), (rin, 4 * rw)]):
        st.markdown(block_text(blk, b_in, b_out))
    st.dataframe(pd.DataFrame([{"block": b.name, "weights": b.params, "MACs": b.macs} for b in blocks]),
                 hide_index=True, column_config={"weights": st.column_config.NumberColumn(format="localized"),
                                                 "MACs": st.column_config.NumberColumn(format="localized")})
    st.plotly_chart(styled(resnet_table2()), key="plain_res")
    st.caption(TABLE2_CAPTION)
    st.info(RESIDUAL_VERDICT)

# --- 6 -----------------------------------------------------------------------------------------
with tabs[5]:
    st.subheader("Build your own stack")
    if "stack_rows" not in ss:
        try:
            ss["stack_rows"] = stack_from_text(qp["stack"]) if "stack" in qp else list(DEFAULT_STACK)
        except ValueError as e:
            st.warning(f"Ignored the stack in the link: {e}")
            ss["stack_rows"] = list(DEFAULT_STACK)
    c = st.columns(3)
    sc_ = c[0].number_input("input channels", 1, 4096, 3, key="st_c")
    sh_ = c[1].number_input("input H = W", 1, 4096, 224, key="st_h")
    edited = st.data_editor(
        pd.DataFrame([vars(L) for L in ss["stack_rows"]]), num_rows="dynamic", key="stack_editor",
        column_config={"kind": st.column_config.SelectboxColumn("type", options=list(LAYER_KINDS), required=True),
                       "out": st.column_config.NumberColumn("filters"), "k": "kernel", "s": "stride",
                       "p": "padding", "d": "dilation", "groups": "groups"}, width="stretch")
    layers = stack_from_records(edited.to_dict("records"))
    rows = analyze_stack(layers, (int(sc_), int(sh_), int(sh_)))
    table = []
    for r_ in rows:
        table.append({"#": r_.index, "type": r_.layer.kind, "input": fmt_shape(r_.in_shape),
                      "output": fmt_shape(r_.out_shape) if r_.out_shape else "—", "params": r_.params,
                      "MACs": r_.macs, "receptive field": r_.rf, "jump": r_.jump,
                      "check": ("⚠ " + r_.error) if r_.error else (r_.formula + ("; " + "; ".join(r_.notes) if r_.notes else ""))})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch",
                 column_config={"params": st.column_config.NumberColumn(format="localized"),
                                "MACs": st.column_config.NumberColumn(format="localized")})
    bad = [r_ for r_ in rows if r_.error]
    for r_ in bad:
        st.error(f"Row {r_.index}: {r_.error}. This row is skipped; the rows after it continue from its input.")
    ok = [r_ for r_ in rows if not r_.error]
    st.caption(f"Totals over the valid rows: {fmt_int(sum(r_.params for r_ in ok))} parameters, "
               f"{fmt_int(sum(r_.macs for r_ in ok))} MACs.")
    if st.button("Save this stack in the link", key="stack_save"):
        qp["stack"] = stack_to_text(layers)
        st.success("The address bar now holds this stack: copy it to share.")

# --- 7 -----------------------------------------------------------------------------------------
with tabs[6]:
    st.subheader("Theoretical vs effective receptive field")
    st.caption("The theoretical field (box) is every pixel that can reach a unit; the effective field "
               "(heatmap, Luo et al. 2016) is how strongly each pixel does reach it: the gradient of the unit "
               "with respect to the input, averaged over random images.")
    ERF_ARCHS = ["resnet18", "vgg16", "alexnet_torchvision", "mobilenet_v2", "resnet50"]
    ERF_CPU_CAP_GMACS = 25   # per image on a CPU: 8 images forward and backward, about 600 GMACs (VGG-16: 15.5)
    c = st.columns(2) + st.columns(2)   # two rows: the layer names need the width at 1024 px
    # timm's ~1,400 names load only when asked for: importing timm takes seconds
    with_timm = st.toggle("timm's architectures too", key="erf_timm",
                          help="Every architecture timm builds, searchable by name, with random weights.")
    if not with_timm and timm_archs.is_timm(ss.get("erf_arch")):
        ss["erf_arch"] = ERF_ARCHS[0]
    e_arch = c[0].selectbox(
        "Model (type to search)", ERF_ARCHS + (timm_names() if with_timm else []), key="erf_arch",
        format_func=lambda n: n if timm_archs.is_timm(n) else registry.get(n).label,
        help="The lecture's five, then every architecture timm builds (marked timm:), with random weights: timm's "
             "pretrained weights need a download.")
    e_spec = archs.resolve(e_arch)
    e_summary = cached_summary(e_arch, tuple(e_spec.input_size), ())
    # every convolution that runs once (timm's Conv2dSame and StdConv2d are convolutions too)
    convs = [r_ for r_ in e_summary.layers if r_.kernel is not None and "Conv" in r_.type and "Transpose" not in r_.type
             and len(r_.output_shape) == 3 and r_.name == r_.module]
    if not convs:
        st.info(f"{e_spec.title} has no convolution with a spatial output to measure.")
        st.stop()
    e_layer = c[1].selectbox("Layer", [r_.name for r_ in convs], index=min(len(convs) - 1, len(convs) // 2),
                             key=f"erf_layer_{e_arch}")
    rec = next(r_ for r_ in convs if r_.name == e_layer)
    _, oh, ow = rec.output_shape
    uc = c[2].columns(2)
    u_row = uc[0].number_input("unit row", 0, oh - 1, oh // 2, key=f"erf_r_{e_arch}_{e_layer}")
    u_col = uc[1].number_input("unit col", 0, ow - 1, ow // 2, key=f"erf_c_{e_arch}_{e_layer}")
    ERF_WEIGHTS = {"random": "random initialisation", "imagenet": "ImageNet (when cached)",
                   "starter": "starter weights (ResNet-18)"}
    e_weights = c[3].selectbox("Weights", ["random"] if timm_archs.is_timm(e_arch) else
                               [k for k in ERF_WEIGHTS if k != "starter" or e_arch == "resnet18"],
                               format_func=ERF_WEIGHTS.get, key=f"erf_w_{e_arch}",
                               help="ImageNet weights are used when cached on this machine; the starter weights "
                                    "(ours, pre-trained on fractals) ship with the dashboard.")
    ERF_SOURCES = {"random noise (as Luo et al.)": "noise", "sample photos (scikit-image)": "samples"}
    source = st.radio("Images", list(ERF_SOURCES), horizontal=True, key="erf_src")
    too_big = device().kind == "cpu" and e_summary.totals.macs / 1e9 > ERF_CPU_CAP_GMACS
    if too_big:
        st.warning(f"{e_spec.title} needs {e_summary.totals.macs / 1e9:,.1f} GMACs per image; 8 images forward and "
                   f"backward would hold this CPU server for minutes. The limit here is {ERF_CPU_CAP_GMACS} GMACs per "
                   "image: pick a smaller network. On a GPU every network runs.")
    st.button("Compute the effective receptive field", key="erf_go", disabled=computing("erf_result") or too_big,
              on_click=start_compute, args=(
        "erf_result", ComputeConfig.of("erf", f"effective receptive field of {e_arch} {e_layer}", arch=e_arch,
                                       weights=e_weights, layer=e_layer, unit=(int(u_row), int(u_col)),
                                       source=ERF_SOURCES[source])))
    follow_compute("erf_result")
    res = ss.get("erf_result")
    if res and (res.arch, res.layer) == (e_arch, e_layer):
        st.caption(f"Weights: {res.weights}. Unit {res.unit} of layer {e_layer}.")
        b = theoretical_box(rec, res.unit)
        box = dict(type="rect", x0=b.x0, x1=b.x1, y0=b.y0, y1=b.y1, line=dict(color="#2ca02c", width=3))
        left, right = st.columns(2)
        img = go.Figure(go.Image(z=res.preview)).add_shape(**box)
        side_px = int(e_spec.input_size[2])
        img.update_layout(title=f"theoretical field: {rec.rf}x{rec.rf} (unclipped)", xaxis_range=[-20, side_px + 20],
                          yaxis_range=[int(e_spec.input_size[1]) + 20, -20])
        left.plotly_chart(styled(img, 460), key="erf_img")
        heat = go.Figure(go.Heatmap(z=res.erf, colorscale="Viridis", showscale=False)).add_shape(**box)
        heat.update_layout(yaxis_autorange="reversed", yaxis_scaleanchor="x", title="effective field |d unit / d pixel|")
        right.plotly_chart(styled(heat, 460), key="erf_plot")
        prof = cross_section(res.erf, b.cy)
        fit = fit_gaussian(prof)
        xs = list(range(len(prof)))
        fig = go.Figure([go.Scatter(x=xs, y=prof, name="effective field (row through the unit)"),
                         go.Scatter(x=xs, y=fit.curve(xs), name=f"Gaussian, sigma = {fit.sigma:.1f} px",
                                    line=dict(dash="dash"))])
        fig.add_vrect(x0=b.x0, x1=b.x1, fillcolor="#2ca02c", opacity=0.08, line_width=0)
        st.plotly_chart(styled(fig.update_layout(title="Cross-section: roughly Gaussian, inside the theoretical field"),
                             300), key="erf_profile")
        side = 2 * res.radius
        st.info(f"95% of the gradient falls within a {side:.0f}-pixel square, "
                f"{100 * side ** 2 / rec.rf ** 2:.0f}% of the theoretical {rec.rf}x{rec.rf} area: the "
                "effective field is smaller and concentrated in the middle. Training reshapes it; compare "
                "with ImageNet weights when they are cached on this machine.")
