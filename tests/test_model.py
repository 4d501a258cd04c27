import io
import math
from contextlib import redirect_stdout

import pytest
import torch
from torchsummary import summary

from models import ModelConfig, Net, count_parameters
from models.checks import from_dict
from train import PRESETS as _PRESETS

PRESETS = {name: p["model"] for name, p in _PRESETS.items()}  # each preset's network

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
    assert count_parameters(Net(PRESETS["default"])) <= 26_100


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


def test_maxpool_features_are_conv_pool_bn_relu_which_differs_from_pooling_last():
    """The model pools before batch norm and ReLU (4x fewer values to normalise). Once batch norm has
    statistics and a negative scale, that is another function than the textbook's conv, BN, ReLU, pool."""
    torch.manual_seed(0)
    net = Net(ModelConfig(downsample="maxpool"))
    for bn in net.bns:
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(4, 3, 32, 32)
    ours, textbook = x, x
    for conv, bn, s in zip(net.convs, net.bns, (2, 2, 1)):
        ours = torch.relu(bn(torch.nn.functional.max_pool2d(conv(ours), s) if s > 1 else conv(ours)))
        textbook = torch.relu(bn(conv(textbook)))
        textbook = torch.nn.functional.max_pool2d(textbook, s) if s > 1 else textbook
    assert torch.allclose(net.feature_map(x), ours, atol=1e-6)
    assert not torch.allclose(ours, textbook, atol=1e-3)


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


def test_training_runs_torchs_fused_attention_once_per_block_and_no_explicit_matmul():
    calls = []

    class Count(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__,
                        torch.nn.functional.scaled_dot_product_attention):
                calls.append(func.__name__)
            return func(*args, **(kwargs or {}))

    for preset in ("default", "tokens"):
        calls.clear()
        with Count():
            Net(PRESETS[preset])(torch.randn(2, 3, 32, 32))
        assert calls == ["scaled_dot_product_attention"] * 4, preset


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(scale="after"), PRESETS["tokens"],
                                    ModelConfig(token_blocks=2, positions=True)],
                         ids=["vector", "vector, scale after", "positions", "two blocks over positions, two after"])
def test_fused_attention_equals_the_written_out_am_v(config):
    """What trains (scaled_dot_product_attention) is what the maps show: Out(AM V) with AM written out."""
    torch.manual_seed(0)
    net = Net(config).eval()
    x = torch.randn(3, 3, 32, 32)
    maps, explicit = net.attention_maps(x), net.feature_map(x).flatten(2).transpose(1, 2)
    explicit = explicit + net.position_code if config.positions else explicit
    for i, (block, am) in enumerate(zip(net.blocks, maps)):
        explicit = net.pool(explicit) if i == config.token_blocks else explicit
        z = am @ block.qkv(explicit)[2]
        explicit = explicit + block.out(z.squeeze(-1) if explicit.dim() == 2 else z)
    logits = net.fc(net.pool(explicit) if explicit.dim() == 3 else explicit)
    assert torch.allclose(net(x), logits, atol=1e-5)


def test_position_code_makes_the_blocks_see_where_a_token_is():
    """Without it, attention over positions then the pool ignore the tokens' order; with it they do not."""
    torch.manual_seed(0)
    plain = Net(ModelConfig(token_blocks=4)).eval()
    with_positions = Net(PRESETS["tokens"]).eval()
    with_positions.load_state_dict(plain.state_dict())  # the same weights: the code is no parameter
    m = torch.randn(2, 48, 8, 8)
    shuffled = m.flatten(2)[:, :, torch.randperm(64)].reshape(2, 48, 8, 8)
    assert torch.allclose(plain.head(m), plain.head(shuffled), atol=1e-5)
    assert not torch.allclose(with_positions.head(m), with_positions.head(shuffled), atol=1e-3)


def test_attention_maps_leave_the_mode_and_the_batch_norm_statistics_alone():
    torch.manual_seed(0)
    net = Net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(4, 3, 32, 32) * 3 + 1
    maps = net.attention_maps(x)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    assert all(torch.equal(a, b) for a, b in zip(maps, net.attention_maps(x)))  # eval mode's maps


def test_the_position_code_adds_no_parameter_and_needs_blocks_over_positions():
    assert count_parameters(Net(ModelConfig(token_blocks=4, positions=True))) == 26_074
    with pytest.raises(ValueError, match="needs token_blocks > 0"):
        ModelConfig(positions=True)


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


@pytest.mark.parametrize("preset", ["reference", "default", "tokens"])
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
    from train import recipe
    with pytest.raises(ValueError, match="unknown model option.*'dropout'"):
        recipe(model={"dropout": 0.1})


def test_logits_shape():
    assert Net()(torch.zeros(3, 3, 32, 32)).shape == (3, 10)


def test_every_result_file_records_a_config_that_rebuilds_its_network():
    """A committed figure must say which network made it, in a form today's code still builds."""
    import json

    from conftest import ROOT
    from train import RunConfig, recipe
    for e in json.loads((ROOT / "benchmarks" / "experiments.json").read_text()).values():
        recipe(**e["config"])  # every experiment still runs: each of its settings is in the code
    results = ROOT / "benchmarks" / "results"
    rows = [*json.loads((results / "accuracy.json").read_text()).values(),
            *json.loads((results / "course.json").read_text())["rows"].values(),
            json.loads((results / "notebook_run.json").read_text())]
    for row in rows:
        net_config = from_dict(ModelConfig, row["model_config"])
        assert from_dict(RunConfig, row["config"]).model_config() == net_config, row.get("name")
        assert count_parameters(Net(net_config)) == row["params"], row.get("name")
