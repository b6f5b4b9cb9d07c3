"""ImageNet top-1, computed and printed as MLPerf's ``accuracy-imagenet.py`` does.

Each ``mlperf_log_accuracy.json`` entry holds one response (hex bytes; the first
value is the predicted class, int32 here). Duplicate QSL indices count once.
Output: ``accuracy=76.456%, good=38228, total=50000``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from mlperf_bnas.accuracy import ACCURACY, AccuracyReport
from mlperf_bnas.errors import UserError
from mlperf_bnas.loadgen.accuracy_log import DTYPES, Entry, entries

__all__ = ["DTYPES", "Top1", "score", "top1"]


@dataclass(frozen=True)
class Top1:
    good: int
    total: int
    duplicates: int

    @property
    def accuracy(self) -> float:
        return 100.0 * self.good / self.total if self.total else 0.0

    def line(self) -> str:
        return "accuracy={:.3f}%, good={}, total={}".format(self.accuracy, self.good, self.total)


def top1(results: Iterable[Entry], labels: Sequence[int], dtype: str = "int32",
         where: str = "mlperf_log_accuracy.json") -> Top1:
    """Top-1 over the log's entries (``loadgen.accuracy_log.entries``); a log without any is an error."""
    seen: set[int] = set()
    good = count = 0
    for entry in results:
        count += 1
        idx = entry.qsl_idx
        if idx in seen:
            continue
        seen.add(idx)
        if not 0 <= idx < len(labels):
            raise UserError(f"{where}: qsl_idx {idx} outside the dataset ({len(labels)} images); "
                            "was the run made with another dataset?")
        try:
            data = entry.values(dtype)
        except ValueError as exc:
            raise UserError(f"{where}: response of qsl_idx {idx} is not {dtype} hex data ({exc})") from None
        if len(data) == 0:
            raise UserError(f"{where}: empty response for qsl_idx {idx}")
        if int(labels[idx]) == int(data[0]):
            good += 1
    if not seen:
        raise UserError(f"{where}: the accuracy log holds no responses, so there is nothing to score; "
                        "rerun the accuracy mode (mlperf-bnas run --mode accuracy)")
    return Top1(good=good, total=len(seen), duplicates=count - len(seen))


@ACCURACY.register("imagenet")
def score(accuracy_log: Path, dataset: Any) -> AccuracyReport:
    result = top1(entries(accuracy_log), dataset.ground_truth(), where=str(accuracy_log))
    return AccuracyReport(text=result.line() + "\n",
                          metrics={"top1": result.accuracy, "good": result.good, "total": result.total,
                                   "duplicates": result.duplicates})
