"""Inference backends, chosen by name from ``BACKENDS``.

Only ``backends/openvino.py`` imports ``openvino``; registrations are lazy so a
command that never touches a backend never imports its runtime.
"""

from mlperf_bnas.backends.base import BACKENDS, Backend, create_backend

BACKENDS.register_lazy("null", "mlperf_bnas.backends.null")
BACKENDS.register_lazy("openvino", "mlperf_bnas.backends.openvino")
BACKENDS.register_lazy("pytorch", "mlperf_bnas.backends.pytorch")
BACKENDS.register_lazy("simulated", "mlperf_bnas.backends.simulated")
BACKENDS.register_lazy("simulated-dataset", "mlperf_bnas.backends.simulated")

__all__ = ["BACKENDS", "Backend", "create_backend"]
