"""Models by name (``MODELS``): ResNet-50 (torchvision), RetinaNet, NAS sub-networks."""

from mlperf_bnas.models.entry import MODELS, ModelEntry, create_model

__all__ = ["MODELS", "ModelEntry", "create_model"]
