"""``mlperf-bnas compliance TEST01 [TEST04] --scenario S ...``: compliance runs, then their verification.

With one test, this process is the LoadGen run. With several, each runs in its own
child process (LoadGen allows one ``FromConfig`` per process), all of them even if
an earlier one fails, and the exit status reports every verdict.

The audit settings go into ``audit.config`` in a private working folder under
``build/<benchmark>/compliance/``; LoadGen reads it through
``StartTestWithLogSettings`` and it is deleted when the run ends, whatever
happens. Results: ``compliance/<system>/<model>/<Scenario>/<TEST>/`` (see
``mlperf_bnas.submission.audit``). Exit status 1 when the verification fails;
``EXIT_PERFORMANCE_ONLY`` (4) when only performance checks failed (a compliance run faster or
slower than the reference run beyond MLPerf's 10-20 %, or INVALID, while every accuracy check
passed): on a machine whose speed changes that is a matter of timing, and ``run.sh`` re-runs
the reference run and the tests back to back, once, for the embedded default.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from mlperf_bnas import pipeline
from mlperf_bnas.commands.arguments import (
    add_common_arguments, add_precision_argument, add_scenario_argument, run_config_from_args,
)
from mlperf_bnas.enums import Mode
from mlperf_bnas.processes import run_child
from mlperf_bnas.submission.audit import DTYPES, TESTS

log = logging.getLogger(__name__)

#: Exit status when only performance checks failed (see the module docstring).
EXIT_PERFORMANCE_ONLY = 4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tests", nargs="+", choices=TESTS, metavar="TEST", help=f"one or more of {', '.join(TESTS)}")
    add_common_arguments(p)
    add_scenario_argument(p)
    p.add_argument("--user-conf", required=True, metavar="FILE", help="the LoadGen user.conf of the submitted runs")
    add_precision_argument(p)
    p.add_argument("--dtype", default="byte", choices=sorted(DTYPES),
                   help="element type of a response, for TEST01's comparison (MLPerf's --dtype; default byte)")


def _child_argv(args: argparse.Namespace, test: str) -> list[str]:
    argv = ["compliance", test, "--benchmark", str(args.benchmark), "--output-dir", str(args.output_dir),
            "--system", args.system, "--scenario", args.scenario, "--user-conf", str(args.user_conf),
            "--precision", args.precision, "--dtype", args.dtype]
    if args.data_dir:
        argv += ["--data-dir", str(args.data_dir)]
    if args.checkpoint:
        argv += ["--checkpoint", str(args.checkpoint)]
    for item in args.set:
        argv += ["--set", item]
    return argv


def run(args: argparse.Namespace) -> int:
    tests = list(dict.fromkeys(args.tests))
    if len(tests) == 1:
        return run_one(args, tests[0])
    failed: dict[str, int | None] = {}
    for test in tests:
        rc = run_child([sys.executable, "-m", "mlperf_bnas", *_child_argv(args, test)])
        if rc != 0:
            failed[test] = rc
    print("compliance: " + (f"FAILED {', '.join(f'{t} (exit {rc})' for t, rc in failed.items())}" if failed
                            else f"{', '.join(tests)} passed"))
    if not failed:
        return 0
    return EXIT_PERFORMANCE_ONLY if set(failed.values()) == {EXIT_PERFORMANCE_ONLY} else 1


def run_one(args: argparse.Namespace, test: str) -> int:
    from mlperf_bnas.accuracy import ACCURACY
    from mlperf_bnas.errors import UserError
    from mlperf_bnas.loadgen.runner import RunRequest, load_settings, run_test
    from mlperf_bnas.submission import audit as C
    from mlperf_bnas.submission.rules import MLPERF_MODEL

    cfg, paths = run_config_from_args(args, args.scenario)
    mlperf_model = MLPERF_MODEL.get(cfg.loadgen_model)
    if mlperf_model is None:
        raise UserError(f"{cfg.benchmark_dir / 'config.yaml'}: loadgen_model {cfg.loadgen_model!r} has no MLPerf "
                        "compliance settings; use resnet50 or retinanet")
    reference = paths.scenario_dir(args.scenario)
    C.check_reference(test, reference)
    work_root = paths.compliance_work_dir
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{test}-{args.scenario}-", dir=work_root))
    audit = work / "audit.config"
    try:
        audit.write_text(C.audit_settings(test, mlperf_model), encoding="utf-8")
        request = RunRequest(loadgen_model=cfg.loadgen_model, scenario=args.scenario, mode=Mode.PERFORMANCE,
                             user_conf=Path(args.user_conf), log_dir=work / "run", archive_dir=paths.archive_dir,
                             audit_config=audit)
        settings = load_settings(request)
        sut, qsl, backend = pipeline.open_sut(cfg, args.scenario, paths, args.precision, args.data_dir, args.checkpoint)
        try:
            run_test(request, sut, qsl, settings)
        finally:
            backend.close()
            # The audit settings must never outlive their run: a later ordinary run would
            # silently become a compliance run.
            audit.unlink(missing_ok=True)
        scorer = ACCURACY.get(cfg.accuracy)
        dataset = pipeline.open_dataset(cfg, paths, args.data_dir, args.checkpoint, create=False) \
            if test == "TEST01" else None

        def score(log_path: Path) -> str:
            return scorer(log_path, dataset).text

        verdict = C.verify_and_publish(test, reference, work / "run",
                                       paths.compliance_dir(args.scenario, test), paths.archive_dir,
                                       args.dtype, score)
    finally:
        audit.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    for line in verdict.lines():
        print(line)
    if verdict.passed:
        return 0
    return EXIT_PERFORMANCE_ONLY if verdict.accuracy_pass is not False else 1


def output_dir(args: argparse.Namespace) -> Path:
    """The folder this command writes into (the command line locks it: one writer at a time)."""
    return Path(args.output_dir)
