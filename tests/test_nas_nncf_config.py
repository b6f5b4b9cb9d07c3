"""NNCF BootstrapNAS configs as their users wrote them: read with NNCF 2.17-2.19's meaning and
defaults, or refused with one line naming the key.

The configs are the examples of NNCF's BootstrapNAS documentation (``BootstrapNAS.md``) and of
its sample (``examples/experimental/torch/classification/bootstrapnas_examples/config.json``),
copied as written (only ``model``/``dataset`` where NNCF's sample had its own names).
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torchvision

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.nas_config import DEFAULT_STAGE_LR, load_nas_config, parse_elasticity
from mlperf_bnas.nas.search.settings import build_settings
from mlperf_bnas.nas.supernet.network import SuperNetwork
from mlperf_bnas.nas.supernet.width import width_list
from mlperf_bnas.nas.train.progressive import learning_rate
from tests.conftest import run_cli

#: BootstrapNAS.md's training and search sections, verbatim.
BOOTSTRAPNAS_MD = {
    "training": {
        "algorithm": "progressive_shrinking",
        "progressivity_of_elasticity": ["depth", "width"],
        "batchnorm_adaptation": {"num_bn_adaptation_samples": 1500},
        "schedule": {"list_stage_descriptions": [
            {"train_dims": ["depth"], "epochs": 25, "depth_indicator": 1, "init_lr": 2.5e-6, "epochs_lr": 25},
            {"train_dims": ["depth"], "epochs": 40, "depth_indicator": 2, "init_lr": 2.5e-6, "epochs_lr": 40},
            {"train_dims": ["depth", "width"], "epochs": 50, "depth_indicator": 2, "reorg_weights": True,
             "width_indicator": 2, "bn_adapt": True, "init_lr": 2.5e-6, "epochs_lr": 50},
            {"train_dims": ["depth", "width"], "epochs": 50, "depth_indicator": 2, "reorg_weights": True,
             "width_indicator": 3, "bn_adapt": True, "init_lr": 2.5e-6, "epochs_lr": 50},
        ]},
        "elasticity": {
            "available_elasticity_dims": ["width", "depth"],
            "width": {"max_num_widths": 3, "min_width": 32, "width_step": 32, "width_multipliers": [1, 0.80, 0.60]},
        },
    },
    "search": {"algorithm": "NSGA2", "num_evals": 3000, "population": 50, "ref_acc": 93.65},
}

#: NNCF's sample config (bootstrapnas_examples/config.json), verbatim but for model and dataset.
NNCF_SAMPLE = {
    "model": "resnet50", "num_classes": 1000, "dataset": "imagenet",
    "input_info": {"sample_size": [1, 3, 224, 224]},
    "batch_size": 64, "batch_size_val": 2000, "multiprocessing_distributed": False,
    "optimizer": {"type": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 3e-7, "base_lr": 3.5e-3,
                  "label_smoothing": 0.1, "no_decay_keys": "bn#bias"},
    "bootstrapNAS": {
        "training": {
            "algorithm": "progressive_shrinking",
            "progressivity_of_elasticity": ["depth", "width"],
            "batchnorm_adaptation": {"num_bn_adaptation_samples": 1500},
            "schedule": copy.deepcopy(BOOTSTRAPNAS_MD["training"]["schedule"]),
            "elasticity": {
                "available_elasticity_dims": ["width", "depth"],
                "width": {"max_num_widths": 3, "min_out_channels": 32, "width_step": 32,
                          "width_multipliers": [1, 0.80, 0.60]},
                "depth": {"skipped_blocks": [
                    ["ResNet/Sequential[layer1]/Bottleneck[1]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer1]/Bottleneck[2]/ReLU[relu]/relu__2"],
                    ["ResNet/Sequential[layer2]/Bottleneck[1]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer2]/Bottleneck[2]/ReLU[relu]/relu__2"],
                    ["ResNet/Sequential[layer2]/Bottleneck[2]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer2]/Bottleneck[3]/ReLU[relu]/relu__2"],
                    ["ResNet/Sequential[layer3]/Bottleneck[3]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer3]/Bottleneck[4]/ReLU[relu]/relu__2"],
                    ["ResNet/Sequential[layer3]/Bottleneck[4]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer3]/Bottleneck[5]/ReLU[relu]/relu__2"],
                    ["ResNet/Sequential[layer4]/Bottleneck[1]/ReLU[relu]/relu__2",
                     "ResNet/Sequential[layer4]/Bottleneck[2]/ReLU[relu]/relu__2"],
                ]},
            },
        },
        "search": {"algorithm": "NSGA2", "num_evals": 3000, "population": 50, "ref_acc": 93.65},
    },
}


def write(tmp_path, cfg: dict, name: str = "nncf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def md_config() -> dict:
    return {"model": "resnet50", "input_info": {"sample_size": [1, 3, 224, 224]}, "dataset": "imagenet",
            "bootstrapNAS": copy.deepcopy(BOOTSTRAPNAS_MD)}


def test_bootstrapnas_md_example_reads_with_nncf_defaults(tmp_path):
    cfg = load_nas_config(write(tmp_path, md_config()))
    t = cfg.training
    assert t.progressivity_of_elasticity == ("depth", "width") and t.num_bn_adaptation_samples == 1500
    first, third = t.stages[0], t.stages[2]
    # StageDescriptor defaults where the stage is silent.
    assert (first.bn_adapt, first.reorg_weights, first.width_indicator, first.sample_rate) == (False, False, 1, 1)
    assert (third.bn_adapt, third.reorg_weights, third.width_indicator, third.init_lr, third.epochs_lr) == \
        (True, True, 2, 2.5e-6, 50)
    w = t.elasticity.width
    assert w.filter_importance == "L2"                     # BootstrapNAS.md's default
    assert w.width_multipliers == (1.0, 0.8, 0.6)
    # NNCF's width list: int(c * m) rounded down to a multiple of 8, at least min_width, max_num_widths values.
    assert width_list(256, w) == [256, 200, 152] and width_list(64, w) == [64, 48, 32]
    assert t.distillation is None and t.lr_schedule is None and t.train_steps is None
    s = build_settings(cfg.search, None)
    assert (s.algorithm, s.num_evals, s.population, s.ref_acc, s.acc_delta) == ("nsga2", 3000, 50, 93.65, 1.0)
    assert (s.num_bn_samples, s.crossover_prob, s.mutation_eta) == (2000, 0.9, 3.0)    # NNCF's search defaults


def test_nncf_sample_config_runs_with_nncf_node_names(tmp_path, caplog):
    """NNCF's own sample config runs unchanged, its skipped_blocks (NNCF graph node names) on
    torchvision's ResNet-50. Its min_out_channels (not a BootstrapNAS key; NNCF ignored it)
    equals min_width and is accepted with a log line; a value that asks for more is refused."""
    contradicting = copy.deepcopy(NNCF_SAMPLE)
    contradicting["bootstrapNAS"]["training"]["elasticity"]["width"]["min_out_channels"] = 64
    with pytest.raises(UserError) as err:
        load_nas_config(write(tmp_path, contradicting, "64.json"))
    message = str(err.value)
    assert "elasticity.width.min_out_channels: 64 not supported" in message and "set min_width" in message
    assert "\n" not in message

    caplog.set_level("INFO")
    cfg = load_nas_config(write(tmp_path, NNCF_SAMPLE))
    assert "min_out_channels 32: NNCF ignored this key" in caplog.text
    assert cfg.training.elasticity.width.min_width == 32
    assert (cfg.batch_size_val, cfg.num_classes, cfg.optimizer.label_smoothing) == (2000, 1000, 0.1)
    assert cfg.optimizer.no_decay_keys == ("bn", "bias") and cfg.optimizer.nesterov
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    supernet = SuperNetwork.from_model(model, cfg.training.elasticity, torch.zeros(1, 3, 64, 64))
    entries = [(b.entry, b.exit) for b in supernet.blocks]
    assert entries == [("layer1_1_relu_2", "layer1_2_relu_2"), ("layer2_1_relu_2", "layer2_2_relu_2"),
                       ("layer2_2_relu_2", "layer2_3_relu_2"), ("layer3_3_relu_2", "layer3_4_relu_2"),
                       ("layer3_4_relu_2", "layer3_5_relu_2"), ("layer4_1_relu_2", "layer4_2_relu_2")]
    assert [list(g) for g in supernet.block_groups] == [[0], [1, 2], [3, 4], [5]]
    # no_decay_keys: BN weights and biases get no weight decay.
    opt = cfg.optimizer.build(list(supernet.model.named_parameters()), 0.1)
    no_decay = opt.param_groups[1]
    assert no_decay["weight_decay"] == 0.0 and opt.param_groups[0]["weight_decay"] == 3e-7
    assert len(no_decay["params"]) == sum(1 for n, _ in supernet.model.named_parameters() if "bn" in n or "bias" in n)


def test_skipped_blocks_need_no_mode_key(tmp_path):
    section = {"depth": {"skipped_blocks": [["ResNet/Sequential[layer1]/Bottleneck[1]/ReLU[relu]/relu__2",
                                             "ResNet/Sequential[layer1]/Bottleneck[2]/ReLU[relu]/relu__2"]]},
               "available_elasticity_dims": ["depth"]}
    opts = parse_elasticity(section)
    assert opts.depth.skipped_blocks is not None
    supernet = SuperNetwork.from_model(torchvision.models.resnet50().eval(), opts, torch.zeros(1, 3, 64, 64))
    assert len(supernet.blocks) == 1 and supernet.blocks[0].exit == "layer1_2_relu_2"


def _training(stages, progressivity=None, dims=("kernel", "width", "depth"), **extra) -> dict:
    training = {"schedule": {"list_stage_descriptions": stages},
                "elasticity": {"available_elasticity_dims": list(dims)}, **extra}
    if progressivity is not None:
        training["progressivity_of_elasticity"] = progressivity
    return {"model": "digits_resnet", "input_info": {"sample_size": [1, 3, 16, 16]},
            "bootstrapNAS": {"training": training}}


K, D, W = ["kernel"], ["kernel", "depth"], ["kernel", "depth", "width"]


@pytest.mark.parametrize("stages, progressivity, dims", [
    ([{"train_dims": K}, {"train_dims": D}, {"train_dims": W}], None, ("kernel", "width", "depth")),
    ([{"train_dims": ["depth"]}, {"train_dims": ["depth", "width"]}], ["depth", "width"], ("width", "depth")),
    ([{"train_dims": ["width"]}, {"train_dims": ["width", "depth"]}], ["width", "depth", "kernel"],
     ("width", "depth")),
])
def test_stage_lists_that_follow_progressivity(tmp_path, stages, progressivity, dims):
    cfg = load_nas_config(write(tmp_path, _training([{**s, "init_lr": 0.01} for s in stages], progressivity, dims)))
    assert [s.train_dims for s in cfg.training.stages] == [tuple(s["train_dims"]) for s in stages]


@pytest.mark.parametrize("stages, progressivity, dims, message", [
    # the default order is kernel -> depth -> width: width before depth skips depth
    ([{"train_dims": K}, {"train_dims": ["kernel", "width"]}], None, ("kernel", "width", "depth"),
     r"list_stage_descriptions\[1\].train_dims: \['kernel', 'width'\] skips 'depth'"),
    ([{"train_dims": ["depth", "width"]}, {"train_dims": ["depth"]}], ["depth", "width"], ("width", "depth"),
     r"list_stage_descriptions\[1\].train_dims: \['depth'\] drops a dimension"),
    ([{"train_dims": D}, {"train_dims": ["depth", "width"]}], None, ("kernel", "width", "depth"),
     r"list_stage_descriptions\[1\].train_dims: \['depth', 'width'\] drops"),
    ([{"train_dims": ["kernel"]}], None, ("width", "depth"), r"'kernel' is not in elasticity.available_elasticity_dims"),
    ([{"train_dims": ["depth"]}], ["depth"], ("width", "depth"), r"progressivity_of_elasticity: \['depth'\] does not "
                                                                  r"place \['width'\]"),
])
def test_stage_lists_that_contradict_progressivity_are_refused(tmp_path, stages, progressivity, dims, message):
    path = write(tmp_path, _training([{**s, "init_lr": 0.01} for s in stages], progressivity, dims))
    with pytest.raises(UserError, match=message) as err:
        load_nas_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_nncf_defaults_when_keys_are_left_out(tmp_path, caplog):
    cfg = load_nas_config(write(tmp_path, {"model": "digits_resnet", "input_info": {"sample_size": [1, 3, 16, 16]},
                                           "bootstrapNAS": {"training": {}}}))
    t = cfg.training
    # NNCF's default schedule (NASSchedulerParams) and progressivity (kernel, depth, width).
    assert [s.train_dims for s in t.stages] == [("kernel",), ("kernel", "depth"), ("kernel", "depth"),
                                                ("kernel", "depth", "width"), ("kernel", "depth", "width")]
    assert (t.stages[2].depth_indicator, t.stages[4].width_indicator, t.stages[4].bn_adapt) == (2, 2, True)
    assert t.progressivity_of_elasticity == ("kernel", "depth", "width")
    assert t.num_bn_adaptation_samples == 2000 and t.elasticity.width.filter_importance == "L2"
    assert t.elasticity.width.channels_per_group_multiple == 4      # ours: oneDNN's INT8 grouped kernels
    assert all(s.init_lr == DEFAULT_STAGE_LR for s in t.stages)      # NNCF's 3.5e-6, with a warning
    assert "init_lr not set" in caplog.text
    assert (cfg.optimizer.type, cfg.optimizer.weight_decay) == ("adam", 1e-4)   # NNCF's sample


def test_train_steps_counts_as_nncf_did(tmp_path):
    """NNCF's sample breaks after the step whose index reaches train_steps: train_steps + 1 steps."""
    cfg = load_nas_config(write(tmp_path, _training([{"train_dims": K, "init_lr": 0.1}], train_steps=4)))
    assert cfg.training.steps_per_epoch(100) == 5 and cfg.training.steps_per_epoch(3) == 3
    top = _training([{"train_dims": K, "init_lr": 0.1}])
    top["train_steps"] = 4                      # where NNCF's sample read it (its SampleConfig)
    assert load_nas_config(write(tmp_path, top, "top.json")).training.train_steps == 4


def test_learning_rates_follow_nncf_schedulers(tmp_path):
    cfg = load_nas_config(write(tmp_path, _training([{"train_dims": K, "epochs": 2, "init_lr": 0.1, "epochs_lr": 2},
                                                     {"train_dims": D, "epochs": 1, "init_lr": 0.05}])))
    t = cfg.training
    # Stage scheduler: cosine from init_lr over epochs_lr epochs, restarted each stage, stepped before each step.
    assert learning_rate(t, t.stages[0], 0, 0, 0, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi / 20)))
    assert learning_rate(t, t.stages[0], 1, 1, 9, 10) == pytest.approx(0.0)
    assert learning_rate(t, t.stages[1], 0, 2, 0, 10) == pytest.approx(0.025 * (1 + math.cos(math.pi / 10)))
    # Global scheduler: one cosine over every epoch, after a linear warm-up.
    g = load_nas_config(write(tmp_path, _training(
        [{"train_dims": K, "epochs": 2}, {"train_dims": D, "epochs": 2}],
        lr_schedule={"params": {"base_lr": 0.2, "warmup_epochs": 1, "warmup_lr": 0.0}}), "g.json")).training
    assert learning_rate(g, g.stages[0], 0, 0, 4, 10) == pytest.approx(0.2 * 5 / 10)
    assert learning_rate(g, g.stages[1], 0, 2, 0, 10) == pytest.approx(0.1 * (1 + math.cos(math.pi * 11 / 40)))
    with pytest.raises(UserError, match=r"list_stage_descriptions\[0\].init_lr: a global lr_schedule"):
        load_nas_config(write(tmp_path, _training([{"train_dims": K, "init_lr": 0.1}],
                                                  lr_schedule={"params": {"base_lr": 0.2}}), "bad.json"))


def test_knowledge_distillation_as_nncf_configured_it(tmp_path):
    kd = load_nas_config(write(tmp_path, _training(
        [{"train_dims": K, "init_lr": 0.1}],
        compression=[{"algorithm": "knowledge_distillation", "type": "mse", "scale": 2.0}]))).training.distillation
    assert (kd.type, kd.scale) == ("mse", 2.0)
    with pytest.raises(UserError, match=r"compression\[0\].algorithm: 'quantization' not supported"):
        load_nas_config(write(tmp_path, _training([{"train_dims": K, "init_lr": 0.1}],
                                                  compression=[{"algorithm": "quantization"}]), "q.json"))


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(pretrained=True), r"pretrained: not supported: pre-trained weights come from"),
    (lambda c: c.update(multiprocessing_distributed=True), r"multiprocessing_distributed: True not supported"),
    (lambda c: c.update(dataset="cifar10"), r"dataset: 'cifar10' not supported"),
    (lambda c: c.update(optimizer={"schedule_type": "cosine"}), r"optimizer.schedule_type: not supported"),
    (lambda c: c["bootstrapNAS"]["training"]["elasticity"].update(target_scopes=["x"]),
     r"elasticity.target_scopes: not supported"),
    (lambda c: c["bootstrapNAS"]["training"]["elasticity"].update(ignored_scopes=["{re}("]),
     r"elasticity.ignored_scopes: '\{re\}\(' is not a regular expression"),
    (lambda c: c["bootstrapNAS"]["training"]["elasticity"].update(depth={"allow_nested_blocks": True}),
     r"depth.allow_nested_blocks: not supported"),
    (lambda c: c["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"][0].update(bn_adapt=True),
     r"bn_adapt: needs batchnorm_adaptation.num_bn_adaptation_samples > 0"),
    (lambda c: c["bootstrapNAS"].update(search={"algorithm": "NSGA2", "num_constraints": 2}),
     r"num_constraints: 2 not supported"),
    (lambda c: c["bootstrapNAS"].update(search={"compression": {}}), r"search.compression: not supported"),
    (lambda c: c["bootstrapNAS"]["training"]["elasticity"].update(width={"channels_per_group_multiple": 0}),
     r"width.channels_per_group_multiple: must be an integer >= 1"),
])
def test_unsupported_keys_are_refused_in_one_line(tmp_path, mutate, message):
    cfg = _training([{"train_dims": K, "init_lr": 0.1}], batchnorm_adaptation={"num_bn_adaptation_samples": 0})
    mutate(cfg)
    path = write(tmp_path, cfg)
    with pytest.raises(UserError, match=message) as err:
        load_nas_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_nncf_config_on_the_command_line(tmp_path):
    """`nas info --config` on BootstrapNAS.md's example: the super-network it generates."""
    proc = run_cli("nas", "info", "--config", str(write(tmp_path, md_config())))
    info = json.loads(proc.stdout)
    assert len(info["blocks"]) == 12 and info["width_groups"][0]["widths"][:3] == [64, 48, 32]


@pytest.mark.parametrize("bn_adapt, n_bn, expected", [
    (True, 32, ["bn"] + ["step"] * 3 + ["bn", "bn"]),     # the stage begins with BN adaptation
    (False, 32, ["step"] * 3 + ["bn", "bn"]),            # evaluation still adapts (NNCF's prepare_for_validation)
    (False, 0, ["step"] * 3),                            # 0 samples disables every adaptation
])
def test_stage_schedule_events(tmp_path, monkeypatch, bn_adapt, n_bn, expected):
    """What one stage of one epoch does, in order: BN adaptation at the beginning of the stage when
    the stage asks, train_steps + 1 steps, then the minimum and maximum sub-networks evaluated."""
    from torch.utils.data import DataLoader, TensorDataset

    from mlperf_bnas.nas.demo import DIGITS_SIZE, DigitsResNet, digits_tensors
    from mlperf_bnas.nas.train import progressive

    cfg = load_nas_config(write(tmp_path, _training(
        [{"train_dims": K, "init_lr": 0.01, "bn_adapt": bn_adapt}], train_steps=2,
        batchnorm_adaptation={"num_bn_adaptation_samples": n_bn},
        elasticity={"available_elasticity_dims": ["kernel"], "kernel": {"max_num_kernels": 2}})))
    events: list[str] = []
    real_bn, real_step = SuperNetwork.bn_adapt, progressive.train_step
    monkeypatch.setattr(SuperNetwork, "bn_adapt", lambda self, *a: (events.append("bn"), real_bn(self, *a))[1])
    monkeypatch.setattr(progressive, "train_step", lambda *a, **k: (events.append("step"), real_step(*a, **k))[1])
    images, labels = digits_tensors()
    train = DataLoader(TensorDataset(images[:256], labels[:256]), batch_size=16, shuffle=True)
    val = DataLoader(TensorDataset(images[256:320], labels[256:320]), batch_size=64)
    teacher = DigitsResNet().eval()
    supernet = SuperNetwork.from_model(teacher, cfg.training.elasticity, torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))
    progressive.train_progressive_shrinking(supernet, teacher, train, val, cfg.training, cfg.optimizer,
                                            tmp_path / "run", 0, progress=False)
    assert events == expected
