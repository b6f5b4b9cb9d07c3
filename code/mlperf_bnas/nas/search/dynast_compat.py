"""What a DyNAS-T user brings: its super-network names, its defaults, its results CSV layout.

DyNAS-T 1.6.0 (``dynast/cli.py``, ``supernetwork_registry.py``, the BootstrapNAS evaluation
interface) is the reference:

* ``DYNAST_DEFAULTS``: the ``dynast`` command's defaults (seed 42, 250 evaluations, population
  50, LINAS, accuracy_top1 + macs optimised, all four metrics measured, latency batch 128);
* ``DYNAST_SUPERNETS``: DyNAS-T's own super-network names, which are not shipped here, each
  with the one line that says so and what to use instead;
* ``DynastCsv``: the results CSV as DyNAS-T writes it for image classification: header
  ``Sub-network,Date,Model Parameters,Latency (ms),MACs,Top-1 Acc (%)``, one row per measured
  sub-network in measurement order, a metric that was not measured written as 0, the
  sub-network as a Python dict and the date as ``str(datetime.now())``, csv's default dialect.
"""

from __future__ import annotations

import csv
import datetime
import io
from pathlib import Path
from typing import Sequence

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import write_atomic

#: ``dynast``'s argument defaults (DyNAS-T 1.6.0 cli.py); settings names as in SearchSettings.
DYNAST_DEFAULTS: dict = {
    "seed": 42,
    "num_evals": 250,
    "population": 50,
    "tactic": "linas",
    "algorithm": "nsga2",
    "optimization_metrics": ["accuracy", "macs"],
    "measurements": ["accuracy", "macs", "params", "latency"],
    "test_fraction": 1.0,
    # DyNAS-T's BootstrapNAS interface: 10 warm-up and 50 timed inferences at --batch_size (128).
    "latency": {"batch_size": 128, "warmup": 10, "iterations": 50},
}

_OFA = ("OFA's {what} super-network is downloaded from OFA's model zoo by DyNAS-T and not shipped here")
#: DyNAS-T's super-network names (and name prefixes) -> why they are not available.
DYNAST_SUPERNETS: dict[str, str] = {
    "ofa_resnet50": _OFA.format(what="ResNet-50"),
    "inc_quantization_ofa_resnet50": _OFA.format(what="ResNet-50 (INC mixed-precision)"),
    "ofa_mbv3_": _OFA.format(what="MobileNetV3"),
    "ofa_proxyless_": _OFA.format(what="ProxylessNAS"),
    "transformer_lt_wmt_en_de": "DyNAS-T's Transformer-LT (WMT En-De) super-network is not shipped here",
    "bert_base_sst2": "DyNAS-T's BERT-base (SST-2) super-network is not shipped here",
    "bert_base_sst2_quantized": "DyNAS-T's BERT-base (SST-2, quantized) super-network is not shipped here",
    "vit_base_imagenet": "DyNAS-T's ViT-base super-network is not shipped here",
    "bootstrapnas_image_classification": "DyNAS-T takes this one as a Python object (an NNCF super-network); "
                                         "here a BootstrapNAS super-network is a checkpoint of `mlperf-bnas nas train`",
}

HEADER = ["Sub-network", "Date", "Model Parameters", "Latency (ms)", "MACs", "Top-1 Acc (%)"]
_COLUMNS = (("params", "Model Parameters"), ("latency", "Latency (ms)"), ("macs", "MACs"),
            ("accuracy", "Top-1 Acc (%)"))


def dynast_supernet_refusal(name: str, ours: Sequence[str]) -> str | None:
    """The one-line refusal for a DyNAS-T super-network name, or None when ``name`` is not one."""
    for key, why in DYNAST_SUPERNETS.items():
        if name == key or (key.endswith("_") and name.startswith(key)):
            return (f"--supernet {name}: {why}; use this project's super-networks: --supernet "
                    f"{'|'.join(ours)} (trained with `mlperf-bnas nas train`, the demo's by "
                    "code/bootstrapnas/run_demo.sh) or --supernet PATH/supernet.pt")
    return None


def subnet_text(config: dict) -> str:
    """The sub-network column: the config as the Python dict DyNAS-T prints (fixed key order)."""
    ordered = {k: list(config[k]) for k in ("kernel", "width", "depth") if k in config}
    ordered.update({k: v for k, v in config.items() if k not in ordered})
    return str(ordered)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class DynastCsv:
    """DyNAS-T's results CSV, kept beside our own results CSV (written by the search's rank 0).

    Rows keep the date they were first written: a resumed search reads the file back and only
    appends what it measures now. Written atomically after every batch."""

    def __init__(self, path: Path, resume: bool = False):
        self.path = Path(path)
        self.dates: dict[str, str] = {}
        if resume and self.path.is_file():
            self._read_back()

    def _read_back(self) -> None:
        with open(self.path, newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or rows[0] != HEADER:
            raise UserError(f"{self.path}: not a DyNAS-T results CSV (header {rows[0] if rows else None}); "
                            "pass another --results_path")
        for row in rows[1:]:
            if len(row) == len(HEADER):
                self.dates[row[0]] = row[1]

    def write(self, records) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf)   # csv's default dialect, as DyNAS-T wrote it (\r\n rows)
        writer.writerow(HEADER)
        for rec in records:
            key = subnet_text(rec.config)
            date = self.dates.setdefault(key, str(datetime.datetime.now()))
            writer.writerow([key, date] + [_number(rec.metrics[m]) if m in rec.metrics else "0" for m, _ in _COLUMNS])
        write_atomic(self.path, buf.getvalue())


def read_dynast_csv(path: Path) -> list[dict]:
    """The rows of a DyNAS-T results CSV as dicts (header names as keys)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
