"""Any model file: ONNX graphs converted for the one analysis engine, against independent numbers.

- registry models exported with torch.onnx: parameters, MACs, receptive fields and every
  convolution's output shape against the registry's own analysis of the same model;
- a graph made by hand with onnx.helper: parameters and MACs counted by hand;
- the converted module computes what the file computes (the exported model's own outputs);
- malformed, oversized, hostile and unsupported files: one sentence each, never a traceback.
"""

from __future__ import annotations

import pytest
import torch

from core import registry
from core.analysis import AnalysisError, summarize
from core.onnx_import import (MAX_NESTING, MAX_NODES, MAX_ONNX_MB, OnnxError, export_onnx, module_paths, read_onnx,
                              summarize_onnx)


@pytest.fixture(scope="module")
def resnet18_onnx() -> bytes:
    spec = registry.get("resnet18")
    torch.manual_seed(0)
    return export_onnx(spec.build(), spec.input_size)


def test_resnet18_export_matches_the_registry(resnet18_onnx):
    """The done-when figures: 11,689,512 parameters and 1.814 GMACs, as the registry entry."""
    net = read_onnx(resnet18_onnx, "resnet18.onnx")
    s, ref = summarize_onnx(net), summarize("resnet18")
    assert net.input_size == (3, 224, 224) and net.fixed_hw == (True, True) and net.inputs == 1
    assert s.totals.params == ref.totals.params == 11_689_512
    assert s.totals.macs == ref.totals.macs == 1_814_073_344
    assert s.totals.bn_stat_elems == ref.totals.bn_stat_elems            # BatchNorm kept as a layer
    assert sum(p.numel() for p in net.model.parameters()) == s.totals.params
    convs = [r for r in s.layers if r.type == "Conv2d"]
    ref_convs = [r for r in ref.layers if r.type == "Conv2d"]
    assert [(r.output_shape, r.params, r.macs, r.rf, r.jump) for r in convs] == \
           [(r.output_shape, r.params, r.macs, r.rf, r.jump) for r in ref_convs]
    assert s.layers[-1].output_shape == [1000] and s.layers[-1].rf == ref.layers[-1].rf
    # the exporter's scopes became module paths: the stages read as ResNet's own
    assert [b.name for b in s.blocks(1) if b.params] == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert convs[1].name == "layer1.0.conv1.Conv"


def test_the_converted_module_computes_what_the_file_computes(resnet18_onnx):
    """Outputs of the converted graph against the PyTorch model the file was exported from."""
    spec = registry.get("resnet18")
    torch.manual_seed(0)
    model = spec.build().eval()
    net = read_onnx(resnet18_onnx, "resnet18.onnx")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(net.model(x), model(x), atol=1e-4)


def test_the_default_export_folds_batchnorm_and_says_so():
    """torch.onnx's default (eval mode, constant folding) folds BatchNorm into the convolutions:
    each conv gains a bias (C_out) and loses its BatchNorm's 2 x C_out; the MACs stay."""
    spec = registry.get("resnet18")
    net = read_onnx(export_onnx(spec.build(), spec.input_size, keep_batchnorm=False), "folded.onnx")
    s, ref = summarize_onnx(net), summarize("resnet18")
    bn = sum(r.params for r in ref.layers if r.type == "BatchNorm2d")
    conv_out = sum(r.output_shape[0] for r in ref.layers if r.type == "Conv2d")
    assert s.totals.params == ref.totals.params - bn + conv_out == 11_684_712
    assert s.totals.macs == ref.totals.macs
    assert any("folded into the convolution" in n for n in net.notes)


def test_branches_and_concatenation_survive_the_round_trip():
    """The lecture's Inception module (four branches, one concatenation): the registry's numbers."""
    spec = registry.get("inception_module")
    s = summarize_onnx(read_onnx(export_onnx(spec.build(), spec.input_size), "inception.onnx"))
    ref = summarize("inception_module")
    assert (s.totals.params, s.totals.macs) == (ref.totals.params, ref.totals.macs) == (1_089_952, 854_196_224)
    assert s.layers[-1].output_shape == [672, 28, 28]


def _hand_made(dynamic: bool = False) -> bytes:
    """Conv 3->8 (3x3, stride 2, pad 1) -> Relu -> MaxPool 2x2 -> GlobalAveragePool -> Flatten -> Gemm 8->5."""
    from onnx import TensorProto, helper, numpy_helper

    rng = torch.Generator().manual_seed(0)
    w = numpy_helper.from_array(torch.randn(8, 3, 3, 3, generator=rng).numpy(), "w")
    b = numpy_helper.from_array(torch.randn(8, generator=rng).numpy(), "b")
    fw = numpy_helper.from_array(torch.randn(5, 8, generator=rng).numpy(), "fw")
    fb = numpy_helper.from_array(torch.randn(5, generator=rng).numpy(), "fb")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="/stem/conv/Conv", kernel_shape=[3, 3],
                              strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/stem/relu/Relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], name="/gap/GlobalAveragePool"),
             helper.make_node("Flatten", ["g"], ["f"], name="/flatten/Flatten", axis=1),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="/fc/Gemm", transB=1)]
    shape = ["N", 3, "H", "W"] if dynamic else [1, 3, 32, 32]
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], [w, b, fw, fb])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_hand_made_graph_counted_by_hand():
    s = summarize_onnx(read_onnx(_hand_made(), "hand.onnx"))
    conv, relu, pool, gap, flat, fc = s.layers
    assert conv.output_shape == [8, 16, 16] and pool.output_shape == [8, 8, 8] and fc.output_shape == [5]
    assert conv.params == 3 * 3 * 3 * 8 + 8 and fc.params == 8 * 5 + 5 and s.totals.params == 269
    assert conv.macs == 16 * 16 * 8 * (3 * 3 * 3) and fc.macs == 8 * 5 and s.totals.macs == 55_336
    assert (conv.rf, conv.jump, pool.rf, pool.jump) == (3, 2, 5, 4)
    assert gap.whole_input and [r.name for r in s.layers][:2] == ["stem.conv.Conv", "stem.relu.Relu"]


def test_a_size_the_file_leaves_open_is_the_users():
    net = read_onnx(_hand_made(dynamic=True), "dyn.onnx")
    assert net.fixed_hw == (False, False) and net.input_size == (3, 224, 224)
    assert summarize_onnx(net, (3, 64, 64)).layers[0].output_shape == [8, 32, 32]
    fixed = read_onnx(_hand_made(), "fixed.onnx")
    with pytest.raises(AnalysisError, match="fixes its input height at 32"):
        summarize_onnx(fixed, (3, 64, 32))


def _model(nodes, inits=(), inputs=None, opsets=(("", 17),)):
    """An onnx ModelProto of `nodes` (onnx is imported where it is used: collecting this file stays cheap)."""
    from onnx import TensorProto, helper

    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def test_unsupported_operators_are_all_named_in_one_message():
    from onnx import helper

    nodes = [helper.make_node("Hardmax", ["x"], ["a"]), helper.make_node("Hardmax", ["a"], ["b"]),
             helper.make_node("Det", ["b"], ["c"]), helper.make_node("Mystery", ["c"], ["y"], domain="com.example")]
    m = _model(nodes, opsets=(("", 17), ("com.example", 1)))
    with pytest.raises(OnnxError) as e:
        read_onnx(m.SerializeToString(), "odd.onnx")
    said = str(e.value)
    assert "Hardmax at opset 17 (2 nodes)" in said and "Det at opset 17 (1 node)" in said
    assert "Mystery (domain com.example) at opset 1 (1 node)" in said


@pytest.mark.parametrize("data,said", [
    (b"this is not a model", "is not an ONNX file"),
    (b"", "is not an ONNX model"),
    (b"\x08\x07", "is not an ONNX model"),                    # a valid protobuf: an IR version and no graph
])
def test_malformed_files_get_a_sentence(data, said):
    with pytest.raises(OnnxError, match=said):
        read_onnx(data, "bad.onnx")


def test_a_truncated_file_gets_a_sentence(resnet18_onnx):
    with pytest.raises(OnnxError, match="is not an ONNX file|is not a valid ONNX model|holds no graph"):
        read_onnx(resnet18_onnx[: len(resnet18_onnx) // 3], "cut.onnx")


def test_a_300_mb_file_is_refused_before_it_is_parsed():
    data = bytes(300 * 10**6)
    with pytest.raises(OnnxError, match=f"is 286 MB; the explorer reads ONNX files of up to {MAX_ONNX_MB} MB"):
        read_onnx(data, "huge.onnx")


def test_weights_in_another_file_are_refused_and_never_read():
    """External data names a path on the server: refused, not looked up."""
    from onnx import TensorProto, helper, numpy_helper

    t = numpy_helper.from_array(torch.ones(4, 3, 1, 1).numpy(), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="/etc/passwd")
    m = _model([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])], [t])
    with pytest.raises(OnnxError, match="keeps weights in another file"):
        read_onnx(m.SerializeToString(), "ext.onnx")


def test_too_many_nodes_and_too_deep_nesting_are_refused():
    from onnx import helper

    nodes = [helper.make_node("Relu", [f"v{i}" if i else "x"], [f"v{i + 1}" if i < MAX_NODES else "y"])
             for i in range(MAX_NODES + 1)]
    with pytest.raises(OnnxError, match="more than 20,000 nodes"):
        read_onnx(_model(nodes).SerializeToString(), "long.onnx")
    body = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "b", [], [])
    for _ in range(MAX_NESTING + 1):
        node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=body)
        body = helper.make_graph([node], "b", [], [])
    with pytest.raises(OnnxError, match="nests subgraphs more than 3 deep"):
        read_onnx(_model([node]).SerializeToString(), "deep.onnx")


def test_inputs_that_are_not_images_are_refused():
    from onnx import TensorProto, helper

    tokens = [helper.make_tensor_value_info("x", TensorProto.INT64, [1, 16])]
    with pytest.raises(OnnxError, match="is not a float tensor"):
        read_onnx(_model([helper.make_node("Relu", ["x"], ["y"])], inputs=tokens).SerializeToString(), "t.onnx")


def test_node_names_become_safe_nested_module_paths():
    assert module_paths(["/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/conv1/Conv", "", "/a\"b<script>/Relu",
                         "/fc", "/fc/Gemm"]) == ["layer1.0.conv1.Conv", "layer1.0.conv1.Conv_1", "node2",
                                                 "a_b_script_.Relu", "fc_", "fc.Gemm"]


def test_the_cli_summarises_an_onnx_file(tmp_path, capsys):
    from core.__main__ import main      # in this process: `python -m core` only calls main() and exits with it

    path = tmp_path / "hand.onnx"
    path.write_bytes(_hand_made())
    assert main(["summary", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stem.conv.Conv" in out and "params 269" in out and "MACs 55,336" in out
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nonsense")
    assert main(["summary", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: bad.onnx is not an ONNX file")
