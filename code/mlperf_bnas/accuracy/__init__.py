"""Accuracy scripts by name: ``mlperf_log_accuracy.json`` -> the text MLPerf's checker parses.

An entry is a function ``score(accuracy_log: Path, dataset) -> AccuracyReport``;
``dataset`` is the opened ``mlperf_bnas.data.Dataset`` the run used (its
``ground_truth()`` is indexed by QSL index).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlperf_bnas.registry import Registry


@dataclass(frozen=True)
class AccuracyReport:
    text: str                                   # accuracy.txt body, exactly as the MLPerf script prints it
    metrics: dict[str, Any] = field(default_factory=dict)


Scorer = Callable[[Path, Any], AccuracyReport]

ACCURACY: Registry[Scorer] = Registry("accuracy script")
ACCURACY.register_lazy("imagenet", "mlperf_bnas.accuracy.top1")
ACCURACY.register_lazy("openimages", "mlperf_bnas.accuracy.coco_map")

__all__ = ["ACCURACY", "AccuracyReport", "Scorer"]
