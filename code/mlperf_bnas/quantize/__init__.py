"""Post-training INT8 quantization with NNCF behind a typed config.

``QuantizationConfig`` (qconfig.py) holds the user-facing words and converts them
for NNCF in one place; ``nncf.py`` is the only module of the package importing nncf.
"""

from mlperf_bnas.quantize.qconfig import QuantizationConfig

__all__ = ["QuantizationConfig"]
