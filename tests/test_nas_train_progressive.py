"""Progressive shrinking on the digits demo model: training steps lower the loss, a resumed
run ends bit-identical to an uninterrupted one, and bad config files are one-line errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.nas_config import load_nas_config
from mlperf_bnas.nas.demo import DIGITS_SIZE, DigitsResNet, digits_tensors
from mlperf_bnas.nas.supernet.network import SuperNetwork
from mlperf_bnas.nas.train.progressive import LAST_CHECKPOINT, TRAIN_LOG, train_progressive_shrinking, train_step
from tests.conftest import REPO, run_cli

STAGES = [
    {"train_dims": ["kernel"], "epochs": 1, "init_lr": 0.01},
    {"train_dims": ["kernel", "depth", "width"], "epochs": 1, "depth_indicator": 2, "width_indicator": 2,
     "reorg_weights": True, "bn_adapt": True, "init_lr": 0.01},
]


def config_dict(stages) -> dict:
    return {
        "model": "digits_resnet", "input_info": {"sample_size": [1, 3, DIGITS_SIZE, DIGITS_SIZE]},
        "batch_size": 32, "dataset": "digits", "seed": 3,
        "bootstrapNAS": {"training": {
            "algorithm": "progressive_shrinking", "train_steps": 2,
            "batchnorm_adaptation": {"num_bn_adaptation_samples": 32},
            "schedule": {"list_stage_descriptions": stages},
            "elasticity": {"width": {"min_width": 8, "width_step": 8}, "kernel": {"max_num_kernels": 2}},
        }},
    }


@pytest.fixture(scope="module")
def data():
    images, labels = digits_tensors()
    train = DataLoader(TensorDataset(images[:256], labels[:256]), batch_size=32, shuffle=True, drop_last=True)
    val = DataLoader(TensorDataset(images[256:384], labels[256:384]), batch_size=64)
    return train, val


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return DigitsResNet().eval()


def _supernet(teacher, options):
    return SuperNetwork.from_model(teacher, options.training.elasticity, torch.zeros(1, 3, DIGITS_SIZE, DIGITS_SIZE))


def test_training_steps_lower_the_loss(teacher, data, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_dict(STAGES)))
    options = load_nas_config(path)
    supernet = _supernet(teacher, options)
    supernet.model.train()
    x, y = next(iter(data[0]))
    optimizer = torch.optim.SGD(supernet.model.parameters(), lr=0.05, momentum=0.9)
    supernet.activate(supernet.space.maximum())
    losses = [train_step(supernet, teacher, x, y, optimizer, options.training) for _ in range(8)]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(teacher, data, tmp_path):
    full_cfg = tmp_path / "full.json"
    full_cfg.write_text(json.dumps(config_dict(STAGES)))
    first_cfg = tmp_path / "first.json"
    first_cfg.write_text(json.dumps(config_dict(STAGES[:1])))
    full, first = load_nas_config(full_cfg), load_nas_config(first_cfg)

    straight = _supernet(teacher, full)
    state = train_progressive_shrinking(straight, teacher, *data, full.training, full.optimizer, tmp_path / "a",
                                        full.seed, progress=False)
    assert [(r["stage"], r["epoch"]) for r in state.history] == [(1, 1), (2, 1)]
    assert json.loads((tmp_path / "a" / TRAIN_LOG).read_text()) == state.history

    # "Interrupted" after stage 1, then resumed from its checkpoint with the whole schedule.
    interrupted = _supernet(teacher, first)
    train_progressive_shrinking(interrupted, teacher, *data, first.training, first.optimizer, tmp_path / "b",
                                first.seed, progress=False)
    resumed = SuperNetwork.load(tmp_path / "b" / LAST_CHECKPOINT, DigitsResNet)
    assert resumed.elasticity_state()["indicators"]["width"] == 1  # stage 1's search space came back
    state_b = train_progressive_shrinking(resumed, teacher, *data, full.training, full.optimizer, tmp_path / "b",
                                          full.seed, resume=True, progress=False)
    assert state_b.history == state.history
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.reorganized and resumed.reorganized


def test_resume_without_checkpoint_is_a_user_error(teacher, data, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_dict(STAGES)))
    options = load_nas_config(path)
    with pytest.raises(UserError, match="nothing to resume"):
        train_progressive_shrinking(_supernet(teacher, options), teacher, *data, options.training, options.optimizer,
                                    tmp_path / "empty", 0, resume=True, progress=False)


def _bad(mutate):
    cfg = copy.deepcopy(config_dict(STAGES))
    mutate(cfg)
    return cfg


@pytest.mark.parametrize("cfg, key", [
    (_bad(lambda c: c["bootstrapNAS"]["training"].update(algorithm="random_search")), "algorithm"),
    (_bad(lambda c: c["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"][0].update(epoch=2)),
     "'epoch'"),
    (_bad(lambda c: c["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"][1].update(epochs=0)),
     r"list_stage_descriptions\[1\].epochs"),
    (_bad(lambda c: c["bootstrapNAS"]["training"]["schedule"]["list_stage_descriptions"][0].update(
        train_dims=["widht"])), "train_dims"),
    (_bad(lambda c: c["bootstrapNAS"]["training"]["elasticity"]["width"].update(filter_importance="L3")),
     "filter_importance"),
    (_bad(lambda c: c["bootstrapNAS"]["training"].update(trainsteps=3)), "'trainsteps'"),
    (_bad(lambda c: c.update(input_info={"sample_size": [3, 16, 16]})), "sample_size"),
])
def test_bad_config_is_a_user_error(cfg, key, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(UserError, match=key) as err:
        load_nas_config(path)
    assert str(path) in str(err.value)


def test_bad_config_on_the_command_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_bad(lambda c: c["bootstrapNAS"]["training"]["elasticity"].setdefault("depth", {}).update(
        max_block_size=1))))
    proc = run_cli("nas", "train", "--config", str(path), "--output-dir", str(tmp_path / "out"), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_block_size" in lines[0] and str(path) in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((REPO / "code" / "bootstrapnas" / "configs").glob("*progressive_shrinking.json")),
                         ids=lambda p: p.name)
def test_shipped_training_configs_are_valid(path):
    cfg = load_nas_config(path)
    assert cfg.training.stages and cfg.model in ("digits_resnet", "resnet50")


def test_imagefolder_training(teacher, tmp_path):
    """The `imagefolder` dataset (train/ and val/ class folders, as for ImageNet) feeds training."""
    from PIL import Image

    from mlperf_bnas.nas.train.steps import train_from_config

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in range(10):
            folder = tmp_path / "data" / split / f"class{label}"
            folder.mkdir(parents=True)
            for k in range(4 if split == "train" else 1):
                Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    cfg = config_dict(STAGES[:1])
    cfg.update(dataset="imagefolder", batch_size=8)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    supernet, state = train_from_config(path, tmp_path / "run", teacher, resume=False,
                                        data_dir=str(tmp_path / "data"), progress=False)
    assert len(state.history) == 1 and 0.0 <= state.history[0]["top1_max"] <= 100.0
    assert (tmp_path / "run" / "supernet.pt").is_file()
    with pytest.raises(UserError, match="train/ and val/"):
        train_from_config(path, tmp_path / "run2", teacher, resume=False, data_dir=str(tmp_path), progress=False)
