"""A built model is tied to its inputs; a run refuses a build made from other ones.

Every build writes a record beside the model (``quantization.json``): the
weights' sha256, the model options (which sub-network: e.g. RetinaNet's FPN
levels), the precision and the preprocessing key. Changing ``CHECKPOINT``, a
model option or the preprocessing without rebuilding would otherwise run the old
model against data prepared for the new one (the synthetic labels are made by the
new weights) and publish its numbers as the new model's. ``require_current``
compares the record with what the run would use now and names the rebuild
command when they differ. Every backend's builder publishes its folder with
``build_folder`` (private folder, record, swap), so a half-finished build is never
seen and a failed one leaves the earlier build in place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import staged_dir, write_json_atomic
from mlperf_bnas.paths import BUILD_RECORD as RECORD_NAME


@dataclass(frozen=True)
class BuildInputs:
    """What a build of ``precision`` must have been made from, as the run sees it now."""

    model: str
    precision: str
    weights_sha256: str
    weights_source: str                 # for the message: the checkpoint path, or "seeded weights"
    preprocess_key: str
    model_options: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so a record compares with live options."""
    return json.loads(json.dumps(value, default=str))


def differences(record: dict[str, Any], now: BuildInputs) -> list[str]:
    """What differs between the build ``record`` and the inputs ``now`` (empty: the build is current)."""
    out = []
    weights = record.get("weights") if isinstance(record.get("weights"), dict) else {}
    recorded_sha = weights.get("sha256")
    if recorded_sha != now.weights_sha256:
        out.append(f"weights: built from sha256 {str(recorded_sha)[:12]}... ({weights.get('path', 'unrecorded')}), "
                   f"this run uses {now.weights_sha256[:12]}... ({now.weights_source})")
    if record.get("model") not in (None, now.model):
        out.append(f"model: built as {record.get('model')!r}, this run uses {now.model!r}")
    if record.get("precision") != now.precision:
        out.append(f"precision: built as {record.get('precision')!r}, this run wants {now.precision!r}")
    if record.get("preprocess_key") != now.preprocess_key:
        out.append(f"preprocessing: built for {record.get('preprocess_key')!r}, this run prepares "
                   f"{now.preprocess_key!r}")
    if "model_options" in record and _plain(record["model_options"]) != _plain(now.model_options):
        recorded, current = _plain(record["model_options"]), _plain(now.model_options)
        changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
        out.append("model options (the sub-network): " + ", ".join(
            f"{k} built as {recorded.get(k)!r}, now {current.get(k)!r}" for k in changed))
    return out


def require_current(model_dir: Path, now: BuildInputs, rebuild: str) -> None:
    """``UserError`` when the build in ``model_dir`` was made from other inputs (or has no record).
    Nothing is checked when nothing is built there (the backend says how to build it)."""
    record_path = Path(model_dir) / RECORD_NAME
    if not Path(model_dir).is_dir():
        return
    if not record_path.is_file():
        raise UserError(f"{model_dir}: a build without its record ({RECORD_NAME}), so nothing says what it was "
                        f"built from; rebuild it: {rebuild}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{record_path}: unreadable build record ({exc}); rebuild it: {rebuild}") from None
    if not isinstance(record, dict):
        raise UserError(f"{record_path}: not a build record (expected a JSON object); rebuild it: {rebuild}")
    diff = differences(record, now)
    if diff:
        raise UserError(f"{record_path}: the {now.precision} model was built from other inputs than this run "
                        f"would use ({'; '.join(diff)}); rebuild it: {rebuild}")


@contextmanager
def build_folder(out_dir: Path, record: dict[str, Any]) -> Iterator[Path]:
    """A private folder beside ``out_dir`` (``fileio.staged_dir``) for a backend to save its model
    files into; when the block ends, ``record`` (as the block left it: the builder adds the
    files' sha256 there) is written into it as the build record and the folder is swapped in
    as ``out_dir``. When the block raises (or is interrupted), the folder is removed and an
    earlier build in ``out_dir`` stays as it was."""
    with staged_dir(out_dir) as tmp:
        yield tmp
        write_json_atomic(tmp / RECORD_NAME, record)
