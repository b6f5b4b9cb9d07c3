"""Progressive-shrinking training of a super-network (BootstrapNAS / OFA), with NNCF 2.x's schedule semantics.

Stages come from ``schedule.list_stage_descriptions``; each names the elastic dimensions it
trains and how far they may shrink (indicators). At the beginning of a stage (NNCF's
``ProgressiveShrinkingController.set_stage``) the width weights are re-organised by filter
importance when the stage says ``reorg_weights`` and width is elastic, then, when it says
``bn_adapt``, the BatchNorm statistics of the active (maximum) sub-network are adapted on
``num_bn_adaptation_samples`` training samples. Every ``sample_rate`` steps (counted from
the start of the stage) a random sub-network of the stage's space is activated and trained
with cross-entropy (optionally label-smoothed) plus, when configured, knowledge distillation
from the frozen pre-trained teacher. The learning rate is NNCF's: a cosine from the stage's
``init_lr`` over ``epochs_lr`` epochs, restarting at each stage, or one global cosine
(``lr_schedule.params.base_lr``, optional warm-up). One optimizer serves the whole run.

An epoch is the whole training loader, or ``train_steps + 1`` steps when ``train_steps`` is
set (NNCF's sample breaks after the step whose index reaches ``train_steps``). After each
epoch the minimum and then the maximum sub-network are evaluated, each after BatchNorm
adaptation whenever ``num_bn_adaptation_samples`` > 0 (NNCF's ``prepare_for_validation``),
and a checkpoint holding the weights, the elasticity state, the optimizer and the position
in the schedule is written atomically, so ``resume`` continues exactly where a run stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mlperf_bnas.errors import UserError
from mlperf_bnas.nas.evaluate import evaluate_accuracy
from mlperf_bnas.nas.nas_config import Distillation, OptimizerOptions, StageDescription, TrainingOptions
from mlperf_bnas.nas.supernet.network import SuperNetwork

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "supernet_last.pt"
FINAL_CHECKPOINT = "supernet.pt"
TRAIN_LOG = "train_log.json"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainState:
    stage: int = 0          # index of the stage being trained
    epoch: int = 0          # epochs of that stage already done
    history: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "epoch": self.epoch, "history": self.history}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, kd: Distillation) -> torch.Tensor:
    """NNCF's KnowledgeDistillationLoss: ``softmax`` is the soft-target cross-entropy (times
    classes x T^2, as NNCF wrote it), ``mse`` the mean squared error of the outputs; times ``scale``."""
    if kd.type == "mse":
        return kd.scale * F.mse_loss(student, teacher)
    t = kd.temperature
    soft = -(F.log_softmax(student / t, dim=1) * F.softmax(teacher / t, dim=1)).mean()
    return kd.scale * soft * student.shape[1] * t * t


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def train_step(supernet: SuperNetwork, teacher: nn.Module, x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, options: TrainingOptions, label_smoothing: float = 0.0) -> float:
    """One optimisation step of the active sub-network; returns the loss."""
    logits = supernet.model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if options.distillation is not None:
        with torch.no_grad():
            target_logits = teacher(x)
        loss = loss + distillation_loss(logits, target_logits, options.distillation)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _cosine(init_lr: float, t: float, total: float) -> float:
    # NNCF lr_scheduler.calc_learning_rate: no clamping (past ``total`` the cosine comes back up).
    return 0.5 * init_lr * (1 + math.cos(math.pi * t / total))


def learning_rate(options: TrainingOptions, stage: StageDescription, stage_epoch: int, global_epoch: int,
                  step: int, n_batch: int) -> float:
    """The rate of step ``step`` (0-based) of an epoch, as NNCF's Stage/GlobalLRScheduler set it.

    ``n_batch`` is NNCF's ``num_steps_in_epoch`` (train_steps, or the loader's length). NNCF
    advances its step counter before each step, so the first step of a stage sees t = 1.
    """
    g = options.lr_schedule
    if g is None:
        return _cosine(stage.init_lr, stage_epoch * n_batch + step + 1, (stage.epochs_lr or stage.epochs) * n_batch)
    if global_epoch < g.warmup_epochs:
        t = global_epoch * n_batch + step + 1
        return t / (g.warmup_epochs * n_batch) * (g.base_lr - g.warmup_lr) + g.warmup_lr
    num_epochs = g.num_epochs or sum(s.epochs for s in options.stages)
    return _cosine(g.base_lr, (global_epoch - g.warmup_epochs) * n_batch + step + 1, num_epochs * n_batch)


def _bn_adapt(supernet: SuperNetwork, loader: Iterable, n: int, seed: int) -> None:
    # Seeded: the shuffled loader's order must be the same in a resumed run.
    torch.manual_seed(seed)
    supernet.bn_adapt(loader, n)


def train_progressive_shrinking(supernet: SuperNetwork, teacher: nn.Module, train_loader: Iterable,
                                val_loader: Iterable, options: TrainingOptions, optimizer_options: OptimizerOptions,
                                out_dir: Path, seed: int, resume: bool = False, checkpoint_extra: dict | None = None,
                                progress: bool = True) -> TrainState:
    """Run (or resume) the whole schedule; checkpoints go to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = supernet.example_input.device
    teacher = teacher.to(device).eval()  # frozen, with its trained BN statistics
    state = TrainState()
    saved_opt = None
    if resume:
        last = out_dir / LAST_CHECKPOINT
        if not last.is_file():
            raise UserError(f"{last}: nothing to resume; run without --resume to start training")
        extra = supernet.checkpoint_extra
        if "train_state" not in extra:
            raise UserError(f"{last}: not a training checkpoint (no train_state)")
        state = TrainState(**extra["train_state"])
        saved_opt = extra.get("optimizer")
        log.info("resuming at stage %d, epoch %d", state.stage + 1, state.epoch)
    n_batches = len(train_loader)  # type: ignore[arg-type]
    steps_per_epoch = options.steps_per_epoch(n_batches)
    n_batch = options.train_steps if options.train_steps is not None else n_batches
    if steps_per_epoch == 0:
        raise UserError("the training set is smaller than one batch; lower batch_size")
    n_bn = options.num_bn_adaptation_samples
    optimizer = optimizer_options.build(list(supernet.model.named_parameters()), optimizer_options.base_lr)
    if saved_opt is not None:
        optimizer.load_state_dict(saved_opt)
    while state.stage < len(options.stages):
        stage = options.stages[state.stage]
        first_epoch = sum(s.epochs for s in options.stages[:state.stage])
        supernet.set_stage(stage.train_dims, {"depth": stage.depth_indicator, "width": stage.width_indicator,
                                              "kernel": stage.kernel_indicator})
        if state.epoch == 0:   # the beginning of the stage
            if stage.reorg_weights and "width" in supernet.options.available_elasticity_dims:
                supernet.reorganize_weights()
            if stage.bn_adapt:
                supernet.activate(supernet.space.maximum())
                _bn_adapt(supernet, train_loader, n_bn, _seed(seed, state.stage, 2))
        log.info("stage %d/%d: train_dims=%s indicators=%s, %d sub-networks", state.stage + 1, len(options.stages),
                 list(stage.train_dims), supernet.indicators, supernet.space.size())
        while state.epoch < stage.epochs:
            rng = np.random.default_rng(_seed(seed, state.stage, state.epoch))
            torch.manual_seed(_seed(seed, state.stage, state.epoch, 1))  # data order of this epoch
            supernet.model.train()
            losses = []
            bar = tqdm(total=steps_per_epoch, disable=not progress, leave=False,
                       desc=f"stage {state.stage + 1} epoch {state.epoch + 1}/{stage.epochs}")
            for step, (x, y) in enumerate(train_loader):
                if step >= steps_per_epoch:
                    break
                lr = learning_rate(options, stage, state.epoch, first_epoch + state.epoch, step, n_batch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if (state.epoch * steps_per_epoch + step) % stage.sample_rate == 0:
                    supernet.activate(supernet.space.sample(rng))
                losses.append(train_step(supernet, teacher, x.to(device), y.to(device), optimizer, options,
                                         optimizer_options.label_smoothing))
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            bar.close()
            space = supernet.space
            # NNCF's order: the minimum, then the maximum sub-network (which stays active).
            torch.manual_seed(_seed(seed, state.stage, state.epoch, 3))
            acc_min = evaluate_accuracy(supernet, space.minimum(), train_loader, val_loader, n_bn)
            acc_max = evaluate_accuracy(supernet, space.maximum(), train_loader, val_loader, n_bn)
            record = {"stage": state.stage + 1, "epoch": state.epoch + 1, "loss": float(np.mean(losses)),
                      "lr_last": lr, "top1_max": acc_max, "top1_min": acc_min,
                      "macs_max": supernet.macs(space.maximum()), "macs_min": supernet.macs(space.minimum())}
            state.history.append(record)
            state.epoch += 1
            log.info("stage %d epoch %d: loss %.4f, top-1 max %.2f%%, min %.2f%% (MACs %d / %d)",
                     record["stage"], record["epoch"], record["loss"], acc_max, acc_min,
                     record["macs_max"], record["macs_min"])
            supernet.activate(supernet.full_space.maximum())
            supernet.save(out_dir / LAST_CHECKPOINT, extra={**(checkpoint_extra or {}), "train_state": state.to_dict(),
                                                          "optimizer": optimizer.state_dict()})
        state.stage += 1
        state.epoch = 0
    # The search space after training is the last stage's (what was trained), which the
    # checkpoint's elasticity state carries to `nas export` and the search.
    supernet.activate(supernet.space.maximum())
    supernet.save(out_dir / FINAL_CHECKPOINT, extra={**(checkpoint_extra or {}), "train_state": state.to_dict()})
    tmp = out_dir / (TRAIN_LOG + ".tmp")
    tmp.write_text(json.dumps(state.history, indent=2))
    os.replace(tmp, out_dir / TRAIN_LOG)
    return state
