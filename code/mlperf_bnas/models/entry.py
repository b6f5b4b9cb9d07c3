"""The models registry: one descriptor per model, which knows everything about that model.

An entry is a class constructed from its validated ``model_options`` (as timm's registry
entry is one place per architecture). Adding a model is one file that registers a subclass;
the pipeline, the backends, the NAS steps and the packager ask the descriptor and never
branch on a model's name. It gives:

* the benchmark side: ``build(checkpoint) -> torch.nn.Module`` (FP32, eval mode), the
  ``PreprocessSpec`` of the cached samples (``preprocess_spec()``), ``to_torch_input(samples)``
  (cached samples -> the module's input), ``example_input(batch)``, how to label synthetic
  data (``make_labeller``), the name of its LoadGen postprocessor, its default MLPerf
  calibration list (``calibration_list``) and its INT8 hooks (``prepare_for_quantization``,
  ``quantization_rewrites``, ``quantization_ignored_modules``);
* sub-networks: a model that accepts exported BootstrapNAS sub-networks as its checkpoint
  names their base (``subnet_base``), maps their recorded preprocessing to its cache form
  (``subnet_preprocess_spec``) and may rebuild them as its own module class
  (``build_subnet``; otherwise the NAS graph tools rebuild them, above this layer);
* BootstrapNAS (``nas_*``): the architecture a super-network is generated from, the
  pre-trained teacher, the training data and loss (knowledge distillation), the accuracy a
  search maximises, the search's data and its latency runtime.

Every optional hook is declared here with its default (a classifier's, where one exists), so
callers never probe with ``hasattr``; a model without NAS support says so in one line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from mlperf_bnas.config import check_options
from mlperf_bnas.data.spec import PreprocessSpec
from mlperf_bnas.errors import UserError
from mlperf_bnas.registry import Registry


#: Channel statistics of ImageNet on the 0..1 scale (torchvision's transforms).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelEntry(ABC):
    #: Frozen dataclass of ``model_options``.
    Options: ClassVar[type]
    #: Name in ``loadgen.postprocess.POSTPROCESSORS`` turning raw outputs into LoadGen responses.
    postprocess: ClassVar[str]
    #: ``MODELS`` name of the base model whose NAS sub-networks this model takes as its
    #: checkpoint (its own name); None: it takes none.
    subnet_base: ClassVar[str | None] = None
    #: File name of the MLPerf calibration list this model's benchmark calibrates on by default:
    #: the build passes it to the dataset's ``calibration_set`` (ImageNet looks for that file in
    #: the data folder, then among the downloaded lists; OpenImages' calibration split is what was
    #: downloaded from it). None: the dataset's own default.
    calibration_list: ClassVar[str | None] = None
    #: Benchmark directory (``code/<name>``) whose backend a NAS search times sub-networks on
    #: (``latency_runtime`` "pytorch": the benchmark's own build and backend); None: none.
    nas_benchmark: ClassVar[str | None] = None
    #: Default latency runtime of a NAS search: "openvino", "pytorch" (the benchmark's INT8
    #: PyTorch backend) or "torch" (eager FP32, for development).
    nas_latency_runtime: ClassVar[str] = "torch"
    #: What ``nas_accuracy`` measures (logs and records name it).
    nas_metric: ClassVar[str] = "top-1 %"
    #: Keep BatchNorm statistics fixed while the super-network trains (detectors: small batches).
    nas_freeze_bn: ClassVar[bool] = False
    #: Whether ``nas_loss`` always needs the teacher's outputs (a detector distils with no hard
    #: labels); False: only when the config configures distillation.
    nas_loss_needs_teacher: ClassVar[bool] = False
    #: The NAS config's ``dataset`` values ``nas_train_data`` takes (checked when the config loads).
    nas_datasets: ClassVar[tuple[str, ...]] = ("imagefolder", "imagenet")
    #: The elastic dimensions this model's super-network may have; a training config asking for
    #: another is refused, naming the key.
    nas_elasticity_dims: ClassVar[tuple[str, ...]] = ("kernel", "width", "depth")
    #: The most bytes one sample's LoadGen response takes (sizes the accuracy log for the
    #: free-space check before a run).
    max_response_bytes: ClassVar[int] = 4

    def __init__(self, options: Any):
        self.options = options

    @property
    def weights_seed(self) -> int:
        """Seed of the weights ``build(None)`` makes (it names the seeded-weights file): every
        model's ``Options`` declares ``seed: int = 0`` (tests/test_models_registry.py checks)."""
        return self.options.seed

    @abstractmethod
    def build(self, checkpoint: Path | None):
        """The FP32 ``torch.nn.Module`` in eval mode: from ``checkpoint`` or seeded weights."""

    @abstractmethod
    def preprocess_spec(self) -> PreprocessSpec:
        """What one cached sample is for this model."""

    def subnet_preprocess_spec(self, preprocess: dict[str, Any]) -> PreprocessSpec:
        """A sub-network's own preprocessing (as its export recorded it), in this model's cache form."""
        raise UserError(f"model {type(self).__name__} takes no NAS sub-network as its checkpoint")

    @abstractmethod
    def to_torch_input(self, samples: np.ndarray, spec: PreprocessSpec):
        """Cached samples (as ``spec`` stores them) -> the float tensor ``build()`` expects."""

    def example_input(self, batch: int = 1):
        spec = self.preprocess_spec()
        samples = np.zeros((batch, *spec.sample_shape), dtype=np.dtype(spec.dtype))
        return self.to_torch_input(samples, spec)

    # -- INT8 hooks (the PyTorch builder) ---------------------------------------------------
    def prepare_for_quantization(self, module):
        """The FP32 module rewritten for quantization (same outputs); default: unchanged."""
        return module

    def quantization_rewrites(self) -> list[str]:
        """What ``prepare_for_quantization`` changed, one sentence each (the build record)."""
        return []

    def quantization_ignored_modules(self) -> list[str]:
        """Modules NNCF leaves in float (the build record names them)."""
        return []

    # -- sub-networks ----------------------------------------------------------------------
    def for_subnet(self, subnet: dict[str, Any], where: str) -> "ModelEntry":
        """This descriptor with an exported sub-network's own architecture options (RetinaNet: its
        pyramid levels), so the build record says what was built; default: unchanged."""
        return self

    def build_subnet(self, subnet: dict[str, Any], where: str):
        """An exported sub-network (``nas.export``'s checked checkpoint dict) as this model's own
        module class, or None: then the NAS graph tools rebuild it generically (the base
        architecture traced, skipped blocks removed, layers resized to the stored weights)."""
        return None

    # -- BootstrapNAS ------------------------------------------------------------------------
    def at_input_size(self, input_size: Sequence[int]) -> "ModelEntry":
        """This descriptor for inputs of ``input_size`` (N, C, H, W): a super-network trained or
        searched at a reduced size is built and timed at that size. Default: the same."""
        return self

    def _no_nas(self, what: str):
        raise UserError(f"model {type(self).__name__} has no BootstrapNAS support ({what}); "
                        f"use a model whose descriptor implements it (models/)")

    def nas_architecture(self, input_size: Sequence[int], state_dict: dict | None = None):
        """The architecture (random weights) a super-network is generated from or loaded into,
        for inputs of ``input_size`` (N, C, H, W); ``state_dict``, when given, decides sizes the
        options leave open (e.g. the class count of stored weights)."""
        self._no_nas("architecture")

    def nas_example_input(self, input_size: Sequence[int]):
        """One input batch of ``input_size`` for tracing (the model's own dtype)."""
        import torch

        return torch.zeros(tuple(input_size))

    def nas_pretrained(self, source: str | None, input_size: Sequence[int]):
        """The pre-trained FP32 model (the teacher) from ``source``: a state-dict file here."""
        from mlperf_bnas.fileio import load_checkpoint

        if source is None:
            raise UserError(f"model {type(self).__name__} needs pre-trained weights: pass --pretrained FILE "
                            "(a state dict saved with torch.save(model.state_dict(), path))")
        path = Path(source)
        obj = load_checkpoint(path, "pre-trained weights file",
                              "pass a state dict saved with torch.save(model.state_dict(), path)")
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        import torch

        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise UserError(f"{path}: expected a state dict of tensors")
        model = self.nas_architecture(input_size, obj)
        try:
            model.load_state_dict(obj)
        except RuntimeError as exc:
            raise UserError(f"{path}: weights do not fit {type(self).__name__} "
                            f"({str(exc).splitlines()[0]})") from None
        return model.eval()

    def nas_student(self, teacher, input_size: Sequence[int]):
        """The network the super-network is generated from, given the teacher; default: the teacher."""
        return teacher

    def nas_export_preprocess(self, input_size: Sequence[int]) -> dict[str, Any]:
        """What an exported sub-network records as its preprocessing (``subnet_preprocess_spec``
        reads it back); default: torchvision's ImageNet evaluation transform at ``input_size``."""
        size = int(input_size[-1])
        return {"input_size": [int(v) for v in input_size[1:]], "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "resize": int(round(size / 0.875)), "crop": size,
                "interpolation": "bilinear"}

    def nas_latency_spec(self, input_size: Sequence[int]) -> PreprocessSpec | None:
        """The benchmark's cache form at ``input_size`` (what its built model reads), for latency on
        the benchmark's runtime; None: only eager torch latency."""
        return None

    def nas_train_data(self, dataset: str, data_dir: str | None, batch_size: int, seed: int,
                       input_size: Sequence[int], teacher=None, options: dict | None = None,
                       val_batch_size: int | None = None, workers: int | None = None) -> tuple[Iterable, Iterable]:
        """(train, validation) loaders for the config's ``dataset``: training batches of
        ``(inputs, targets)``, and what ``nas_accuracy`` measures on (``teacher``: the pre-trained
        model, for a model whose accuracy is measured against it; ``options``: the config's
        ``dataset_options``; ``val_batch_size``, ``workers``: the config's batch_size_val and
        workers, as NNCF's sample).

        A classifier's: ``imagefolder`` (NNCF's ``imagenet``), ``data_dir`` holding ``train/`` and ``val/`` class folders
        (ImageNet's layout), ImageNet's augmentation and evaluation transforms."""
        if dataset not in ("imagefolder", "imagenet"):
            raise UserError(f"dataset {dataset!r}: model {type(self).__name__} trains on 'imagefolder' (--data-dir "
                            "with train/ and val/ class folders)")
        if options:
            raise UserError(f"dataset_options {sorted(options)}: dataset {dataset!r} takes none")
        if not data_dir:
            raise UserError(f"dataset {dataset!r} needs --data-dir holding train/ and val/ class folders")
        import os

        import torchvision.transforms as T
        from torch.utils.data import DataLoader
        from torchvision.datasets import ImageFolder

        root = Path(data_dir)
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise UserError(f"{root / split}: missing; --data-dir must hold train/ and val/ class folders")
        size = int(input_size[-1])
        norm = T.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))
        train = ImageFolder(root / "train", T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(),
                                                       T.ToTensor(), norm]))
        val = ImageFolder(root / "val", T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.ToTensor(),
                                                   norm]))
        workers = min(4, os.cpu_count() or 1) if workers is None else workers
        return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True),
                DataLoader(val, batch_size=val_batch_size or batch_size, shuffle=False, num_workers=workers))

    def nas_loss(self, student_out, teacher_out, targets, distillation=None, label_smoothing: float = 0.0):
        """Training loss of a sub-network. ``teacher_out``: the frozen pre-trained model's outputs
        on the same batch (None unless ``distillation`` is configured or ``nas_loss_needs_teacher``);
        ``distillation``: the config's ``Distillation`` (type, scale, temperature) or None;
        ``label_smoothing``: the config's optimizer.label_smoothing. A classifier's:
        ``classifier_loss`` (cross-entropy + optional knowledge distillation, as NNCF)."""
        return classifier_loss(student_out, teacher_out, targets, distillation, label_smoothing)

    def nas_accuracy(self, model, val_loader: Iterable) -> float:
        """What a search maximises (``nas_metric``), measured on ``val_loader``: top-1 (%)."""
        return top1(model, val_loader)

    def nas_search_data(self, dataset_path: Path | None, fraction: float, seed: int, input_size: Sequence[int],
                        training: dict | None = None) -> tuple[Iterable, Iterable]:
        """(BN re-calibration batches, accuracy batches) of a search: disjoint, deterministic.
        ``training``: what the super-network checkpoint recorded of its training (dataset, data
        folder, teacher weights)."""
        self._no_nas("search data")

    def make_labeller(self, module, spec: PreprocessSpec, batch: int = 16) -> Callable[[Sequence[Path]], list]:
        """labeller(image paths) -> the synthetic ground truth: here the FP32 ``module``'s top-1
        class per image (classifiers); detectors label with their own detections."""
        import torch
        from PIL import Image

        def label(image_paths: Sequence[Path]) -> list[int]:
            labels: list[int] = []
            for start in range(0, len(image_paths), batch):
                samples = []
                for p in image_paths[start:start + batch]:
                    with Image.open(p) as img:
                        samples.append(spec.apply(img))
                with torch.no_grad():
                    out = module(self.to_torch_input(np.stack(samples), spec))
                labels.extend(int(v) for v in out.argmax(1))
            return labels

        return label


def knowledge_distillation(student_out, teacher_out, kd):
    """NNCF's KnowledgeDistillationLoss: ``kd.type`` ``softmax`` is the soft-target cross-entropy
    (times classes x T^2, as NNCF wrote it), ``mse`` the mean squared error of the outputs; times
    ``kd.scale`` (``kd``: the NAS config's ``Distillation``)."""
    import torch.nn.functional as F

    if kd.type == "mse":
        return kd.scale * F.mse_loss(student_out, teacher_out)
    t = kd.temperature
    soft = -(F.log_softmax(student_out / t, dim=1) * F.softmax(teacher_out / t, dim=1)).mean()
    return kd.scale * soft * student_out.shape[1] * t * t


def classifier_loss(student_out, teacher_out, targets, distillation=None, label_smoothing: float = 0.0):
    """A classifier's NAS training loss, as NNCF's BootstrapNAS sample computes it: cross-entropy
    (``label_smoothing``: the config's optimizer.label_smoothing) plus, when ``distillation`` is
    configured, knowledge distillation from the teacher's outputs (``knowledge_distillation``)."""
    import torch.nn.functional as F

    loss = F.cross_entropy(student_out, targets, label_smoothing=label_smoothing)
    if distillation is not None:
        loss = loss + knowledge_distillation(student_out, teacher_out, distillation)
    return loss


def top1(model, loader: Iterable, device=None) -> float:
    """Top-1 accuracy (%) of ``model`` over ``(inputs, labels)`` batches."""
    import torch

    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            pred = model(x.to(device)).argmax(dim=1)
            correct += int((pred == y.to(device)).sum())
            total += int(y.shape[0])
    model.train(was_training)
    if total == 0:
        raise ValueError("top-1 over an empty validation loader")
    return 100.0 * correct / total


MODELS: Registry[type[ModelEntry]] = Registry("model")
MODELS.register_lazy("resnet50", "mlperf_bnas.models.resnet50")
MODELS.register_lazy("retinanet", "mlperf_bnas.models.retinanet")
MODELS.register_lazy("digits_resnet", "mlperf_bnas.models.digits")


def create_model(name: str, options: dict[str, Any], where: str = "model_options",
                 sources: dict[str, str] | None = None) -> ModelEntry:
    cls = MODELS.get(name)
    return cls(check_options("model_options", options, cls.Options, where, sources))
