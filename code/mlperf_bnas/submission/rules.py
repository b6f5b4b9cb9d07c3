"""MLPerf Inference v5.1 facts used by packaging and by our checker.

Values reproduced from the official v5.1 submission checker's configuration
(mlcommons/inference, tools/submission/submission_checker constants for
"v5.1") and LoadGen's embedded mlperf.conf; see docs/submission.md.
"""

from __future__ import annotations

from mlperf_bnas.loadgen import logs
from mlperf_bnas.loadgen.sut import SAMPLES_PER_QUERY

#: Folder names we package -> the checker's benchmark names ("resnet50" is in the
#: checker's built-in model_mapping, so no model_mapping.json is needed).
MLPERF_MODEL = {"resnet50": "resnet", "resnet": "resnet", "retinanet": "retinanet"}

SEEDS = {
    "qsl_rng_seed": 1780908523862526354,
    "sample_index_rng_seed": 14771362308971278857,
    "schedule_rng_seed": 18209322760996052031,
}
#: The v5.1 scenario tables for the benchmarks we package: the release checker's
#: required-/optional-scenarios-<system type> (tools/submission/submission_checker.py at
#: v5.1.1). A benchmark absent from a type's table does not exist for that type: the
#: release checker rejects its results in every division ("has an invalid model"), so
#: ResNet-50 needs "edge" or "datacenter,edge". New scenarios are added as runs, not here.
_DATACENTER_EDGE = {"resnet": ("SingleStream", "MultiStream", "Offline", "Server"),
                    "retinanet": ("SingleStream", "Offline", "MultiStream", "Server")}
REQUIRED_SCENARIOS: dict[str, dict[str, tuple[str, ...]]] = {
    "datacenter": {"retinanet": ("Server", "Offline")},
    "edge": {"resnet": ("SingleStream", "MultiStream", "Offline"),
             "retinanet": ("SingleStream", "MultiStream", "Offline")},
    "datacenter,edge": _DATACENTER_EDGE,
    "edge,datacenter": _DATACENTER_EDGE,
}
OPTIONAL_SCENARIOS: dict[str, dict[str, tuple[str, ...]]] = {t: {} for t in REQUIRED_SCENARIOS}
#: What each division does with those tables (check_results_dir of the release checker):
#: the open division waives missing required scenarios (a --debug warning) and accepts
#: scenarios outside the table; closed and network reject both. The benchmark itself must be
#: in the table in every division.
SCENARIO_POLICY = {
    "open": {"missing": "waived", "unlisted": "accepted"},
    "closed": {"missing": "fail", "unlisted": "fail"},
    "network": {"missing": "fail", "unlisted": "fail"},
}
PERFORMANCE_SAMPLE_COUNT = {"resnet": 1024, "retinanet": 64}
DATASET_SIZE = {"resnet": 50000, "retinanet": 24781}
#: Server latency bound (99th percentile), ns.
LATENCY_CONSTRAINT_NS = {"resnet": {"Server": 15_000_000}, "retinanet": {"Server": 100_000_000}}
#: The release checker's min_queries (checked only for scenarios without early stopping, i.e.
#: Offline; SingleStream, MultiStream and Server use early stopping there).
MIN_QUERIES = {"resnet": {"SingleStream": 1024, "MultiStream": 270336, "Server": 270336, "Offline": 1},
               "retinanet": {"SingleStream": 1024, "MultiStream": 270336, "Server": 270336, "Offline": 1}}
OFFLINE_MIN_SAMPLES_PER_QUERY = 24576      # release checker: every division; package: closed only
MIN_DURATION_MS = 600_000
MAX_ACCURACY_LOG_SIZE = 10 * 1024
FILE_SIZE_LIMIT_BYTES = 50 * 1024 * 1024
#: The result each scenario reports (the release checker's RESULT_FIELD_NEW["v5.1"]): a rate, or
#: for SingleStream / MultiStream LoadGen's early-stopping estimate of the 90th / 99th
#: percentile latency in ns (per query of 8 samples for MultiStream), reported in ms.
RESULT_FIELD = logs.RESULT_FIELD          # the detail-log key of a performance result, per scenario
#: The latency percentile each latency-bound scenario is judged at (LoadGen's mlperf.conf).
LATENCY_PERCENTILE = {"SingleStream": 0.90, "MultiStream": 0.99, "Server": 0.99}
#: Scenarios whose result is a latency (lower is better), reported in ms.
LATENCY_SCENARIOS = ("SingleStream", "MultiStream")
#: Samples per MultiStream query (LoadGen's mlperf.conf; the checker reads effective_samples_per_query).
MULTISTREAM_SAMPLES_PER_QUERY = SAMPLES_PER_QUERY["MultiStream"]


def result_unit(scenario: str) -> str:
    return "ms" if scenario in LATENCY_SCENARIOS else "samples/s"


def result_value(scenario: str, raw: float) -> float:
    """The scenario's result as reported: a rate as logged, a latency in ms (logged in ns)."""
    return raw / 1e6 if scenario in LATENCY_SCENARIOS else raw
ACCURACY_PATTERN = {
    "resnet": r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*([\d\.]+).*",
    "retinanet": r".*(?:mAP=|'Total':)\s*([\d.]+)",
}
#: Compliance tests that apply to each benchmark (models_TEST01 / models_TEST04).
COMPLIANCE_TESTS = {"resnet": ("TEST01", "TEST04"), "retinanet": ("TEST01",)}
#: TEST01 audit: accuracy_log_sampling_target per benchmark.
TEST01_SAMPLING_TARGET = {"resnet": 4096, "retinanet": 256}
TEST01_ACCURACY_LOG_RNG_SEED = 720381539243781796

#: Files the official checker loads a result from (without them it cannot score it) ...
PERF_LOADED_FILES = ("mlperf_log_detail.txt",)
ACC_LOADED_FILES = ("accuracy.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json")
#: ... and the rest of the exact file lists the single-file checker also demands.
PERF_LISTED_FILES = ("mlperf_log_summary.txt",)
ACC_LISTED_FILES = ("mlperf_log_summary.txt",)
OPTIONAL_PERF_FILES = ("mlperf_log_accuracy.json",)
REQUIRED_MEASURE_FILES = ("user.conf", "README.md")
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename",
                      "weight_data_types", "weight_transformations")
