import copy
import io
import math
import sys
from contextlib import redirect_stdout

import pytest
import torch
from torchsummary import summary

from models import PRESETS, ModelConfig, Net, count_parameters

EXPECTED_TABLE = [("Conv2d-1", "[-1, 16, 32, 32]", "448"), ("Conv2d-2", "[-1, 32, 32, 32]", "4,640"),
                  ("Conv2d-3", "[-1, 48, 32, 32]", "13,872"), ("AvgPool2d-4", "[-1, 48, 1, 1]", "0")]
for b in range(4):
    n = 5 + 5 * b
    EXPECTED_TABLE += [(f"Linear-{n + i}", "[-1, 8]", "392") for i in range(3)]
    EXPECTED_TABLE += [(f"Linear-{n + 3}", "[-1, 48]", "432"), (f"UltimusBlock-{n + 4}", "[-1, 48]", "0")]
EXPECTED_TABLE.append(("Linear-25", "[-1, 10]", "490"))


def test_reference_preset_has_25882_parameters():
    assert count_parameters(Net(PRESETS["reference"])) == 25_882


def test_reference_summary_matches_course_table():
    buf = io.StringIO()
    with redirect_stdout(buf):
        summary(Net(PRESETS["reference"]), (3, 32, 32), device="cpu")
    text = buf.getvalue()
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and parts[0].split("-")[-1].isdigit():
            rows.append((parts[0], " ".join(parts[1:-1]), parts[-1]))
    assert rows == EXPECTED_TABLE
    assert "Total params: 25,882" in text


def test_best_preset_within_parameter_limit():
    assert count_parameters(Net(PRESETS["best"])) <= 26_100


def test_strides_change_no_parameter_count():
    assert count_parameters(Net(ModelConfig(strides=(2, 2, 2)))) == count_parameters(Net(ModelConfig(strides=(1, 1, 1))))
    assert count_parameters(Net(ModelConfig(downsample="maxpool"))) == count_parameters(Net(ModelConfig()))


@pytest.mark.parametrize("downsample,conv_strides", [("stride", [2, 2, 1]), ("maxpool", [1, 1, 1])])
def test_downsample_reaches_a_equals_8(downsample, conv_strides):
    net = Net(ModelConfig(strides=(2, 2, 1), downsample=downsample))
    assert [c.stride[0] for c in net.convs] == conv_strides
    seen = []
    net.gap.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape))
    net(torch.zeros(2, 3, 32, 32))
    assert seen == [(2, 48, 8, 8)]  # A = 32 / (2 * 2 * 1) either way


def test_maxpool_features_are_conv_bn_relu_pool():
    """The model pools before its ReLU (cheaper); the result must be the textbook order's."""
    torch.manual_seed(0)
    net = Net(ModelConfig(downsample="maxpool")).eval()
    x = torch.randn(4, 3, 32, 32)
    h = x
    for conv, bn, s in zip(net.convs, net.bns, (2, 2, 1)):
        h = torch.relu(bn(conv(h)))
        h = torch.nn.functional.max_pool2d(h, s) if s > 1 else h
    assert torch.allclose(net.feature_map(x), h, atol=1e-6)


def test_unknown_downsample_is_rejected():
    with pytest.raises(ValueError, match="downsample must be one of"):
        ModelConfig(downsample="avgpool")


def test_tokens_preset_keeps_the_weights_and_the_parameter_count():
    buf = io.StringIO()
    with redirect_stdout(buf):
        summary(Net(PRESETS["tokens"]), (3, 32, 32), device="cpu")
    assert "Total params: 26,074" in buf.getvalue()  # the same layers as the default, used over positions
    assert [tuple(p.shape) for p in Net(PRESETS["tokens"]).parameters()] == [tuple(p.shape) for p in Net().parameters()]


@pytest.mark.parametrize("token_blocks", [4, 2])
def test_blocks_over_positions_attend_64x64_per_image(token_blocks):
    torch.manual_seed(0)
    net = Net(ModelConfig(token_blocks=token_blocks)).eval()
    maps = net.attention_maps(torch.randn(3, 3, 32, 32))
    assert [m.shape for m in maps] == [(3, 64, 64)] * token_blocks + [(3, 8, 8)] * (4 - token_blocks)
    assert all(torch.allclose(m.sum(-1), torch.ones(m.shape[:2]), atol=1e-5) for m in maps)


def test_attention_over_positions_is_one_matmul_per_product_not_a_loop_over_tokens():
    calls = []

    class Count(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__):
                calls.append(args[0].shape)
            return func(*args, **(kwargs or {}))

    block = Net(PRESETS["tokens"]).blocks[0]
    with Count():
        block(torch.randn(2, 64, 48))
    assert calls == [(2, 64, 8), (2, 64, 64)]  # Q K^T and AM V, each over every token at once


def _variants():
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import variants
    return variants


@pytest.mark.parametrize("variant", ["prenorm", "positions", "prenorm+positions"])
def test_benchmark_variants_add_no_parameter_and_change_the_output(variant):
    torch.manual_seed(0)
    plain = Net(PRESETS["tokens"]).eval()
    wrapped = _variants().apply(copy.deepcopy(plain), variant)
    x = torch.randn(2, 3, 32, 32)
    assert count_parameters(wrapped) == count_parameters(plain) == 26_074
    assert not torch.allclose(wrapped(x), plain(x))


def test_position_code_makes_the_blocks_see_where_a_token_is():
    """Without it, attention over positions then the pool ignore the tokens' order; with it they do not."""
    torch.manual_seed(0)
    plain = Net(PRESETS["tokens"]).eval()
    with_positions = _variants().apply(copy.deepcopy(plain), "positions")
    m = torch.randn(2, 48, 8, 8)
    shuffled = m.flatten(2)[:, :, torch.randperm(64)].reshape(2, 48, 8, 8)
    assert torch.allclose(plain.head(m), plain.head(shuffled), atol=1e-5)
    assert not torch.allclose(with_positions.head(m), with_positions.head(shuffled), atol=1e-3)


@pytest.mark.parametrize("scale,row_sum", [("inside", 1.0), ("after", 1 / math.sqrt(8))])
def test_attention_is_8x8_per_sample_with_softmax_rows(scale, row_sum):
    torch.manual_seed(0)
    net = Net(ModelConfig(scale=scale)).eval()
    maps = net.attention_maps(torch.randn(5, 3, 32, 32))
    assert len(maps) == 4
    for am in maps:
        assert am.shape == (5, 8, 8)
        assert torch.allclose(am.sum(-1), torch.full((5, 8), row_sum), atol=1e-5)
        assert (am >= 0).all()
    # per sample: different images get different matrices
    assert not torch.allclose(maps[0][0], maps[0][1])


@pytest.mark.parametrize("preset", ["reference", "best", "tokens"])
def test_one_sample_does_not_depend_on_its_batch(preset):
    torch.manual_seed(0)
    net = Net(PRESETS[preset]).eval()
    x = torch.randn(8, 3, 32, 32)
    alone = net(x[:1])
    in_batch = net(torch.cat([x[:1], torch.randn(7, 3, 32, 32) * 5]))[:1]
    assert torch.allclose(alone, in_batch, atol=1e-5)


def test_batch_mixing_attention_does_depend_on_the_batch():
    """The published Q.T @ K bug, kept as a config for the lesson: the check above catches it."""
    torch.manual_seed(0)
    net = Net(ModelConfig(attention="batch")).eval()
    x = torch.randn(8, 3, 32, 32)
    assert not torch.allclose(net(x[:1]), net(torch.cat([x[:1], torch.randn(7, 3, 32, 32) * 5]))[:1], atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 28, 28)])
def test_wrong_input_shape_names_expected_shape(shape):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        Net()(torch.zeros(shape))


def test_unknown_model_option_is_rejected():
    with pytest.raises(ValueError, match="unknown model option.*'dropout'"):
        ModelConfig.from_dict({"dropout": 0.1})


def test_logits_shape():
    assert Net()(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def _is_history(row):
    """A row marked not rebuildable must name the switches that have left the model."""
    if row.get("rebuildable") is not False:
        return False
    assert row["removed_switches"] and not set(row["removed_switches"]) & set(ModelConfig.__dataclass_fields__)
    return True


def test_every_result_file_records_a_config_that_rebuilds_its_network():
    """A committed figure must say which network made it, in a form the model file still builds (or be marked history)."""
    import json

    from conftest import ROOT
    from train import RunConfig
    variants = _variants()
    results = ROOT / "benchmarks" / "results"
    rows = list(json.loads((results / "accuracy.json").read_text()).values())
    rows += [json.loads((results / f).read_text())
             for f in ("notebook_run.json", "failure_lr_at_loss_minimum.json", "reference_old_code_seed0.json")]
    for row in rows:
        if _is_history(row):
            continue
        net_config = ModelConfig.from_dict(row["model_config"])
        assert RunConfig.from_dict(row["config"]).model_config() == net_config, row.get("name")
        net = variants.apply(Net(net_config), row["variant"]) if "variant" in row else Net(net_config)
        assert count_parameters(net) == row["params"], row.get("name")
    others = [*json.loads((results / "signal_flow.json").read_text()).values(),
              *json.loads((results / "lr_test_spread.json").read_text())["rows"]]
    jobs = json.loads((results / "job_vs_commit.json").read_text())["runs"]
    others += jobs["old"] + jobs["new"]
    speed = json.loads((results / "speed.json").read_text())
    others += [speed, speed["default_network"]] if "default_network" in speed else [speed]
    others.append(json.loads((results / "step_parts.json").read_text()))
    for r in others:
        if not _is_history(r):
            ModelConfig.from_dict(r["model_config"])
