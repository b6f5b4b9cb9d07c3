"""ImageNet top-1, computed and printed as MLPerf's ``accuracy-imagenet.py`` does.

Each ``mlperf_log_accuracy.json`` entry holds one response (hex bytes; the first
value is the predicted class, int32 here). Duplicate QSL indices count once.
Output: ``accuracy=76.456%, good=38228, total=50000``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlperf_bnas.accuracy import ACCURACY, AccuracyReport
from mlperf_bnas.errors import UserError

DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


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


def read_accuracy_log(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{path}: accuracy log not found; run the accuracy mode first "
                        "(run_offline_accuracy.sh / mlperf-bnas run --mode accuracy)") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a LoadGen accuracy log ({exc}); rerun the accuracy mode") from None
    if not isinstance(results, list):
        raise UserError(f"{path}: expected a JSON list of {{seq_id, qsl_idx, data}} entries")
    return results


def top1(results: Sequence[dict[str, Any]], labels: Sequence[int], dtype: str = "int32",
         where: str = "mlperf_log_accuracy.json") -> Top1:
    seen: set[int] = set()
    good = 0
    for entry in results:
        try:
            idx = int(entry["qsl_idx"])
            data = np.frombuffer(bytes.fromhex(entry["data"]), DTYPES[dtype])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: malformed entry {entry!r:.80} ({exc})") from None
        if idx in seen:
            continue
        seen.add(idx)
        if not 0 <= idx < len(labels):
            raise UserError(f"{where}: qsl_idx {idx} outside the dataset ({len(labels)} images); "
                            "was the run made with another dataset?")
        if len(data) == 0:
            raise UserError(f"{where}: empty response for qsl_idx {idx}")
        if int(labels[idx]) == int(data[0]):
            good += 1
    return Top1(good=good, total=len(seen), duplicates=len(results) - len(seen))


@ACCURACY.register("imagenet")
def score(accuracy_log: Path, dataset: Any) -> AccuracyReport:
    result = top1(read_accuracy_log(accuracy_log), dataset.ground_truth(), where=str(accuracy_log))
    return AccuracyReport(text=result.line() + "\n",
                          metrics={"top1": result.accuracy, "good": result.good, "total": result.total,
                                   "duplicates": result.duplicates})
