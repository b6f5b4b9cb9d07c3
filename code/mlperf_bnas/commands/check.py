"""``mlperf-bnas check --input $OUTPUT_DIR/submission``: our v5.1 open-division submission checker.

One line per finding (file, rule, and what the official checker does with it),
then a summary; exit status 1 on any error, 0 otherwise. Rules and their mapping
to the official MLPerf checker: docs/submission.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mlperf_bnas.errors import UserError
from mlperf_bnas.paths import OutputRoot


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", type=Path,
                   help="submission root: the folder holding open/ (e.g. $OUTPUT_DIR/submission)")
    p.add_argument("--full-results", type=Path, default=None,
                   help="folder with the full (untruncated) results to verify hashes against "
                        "(default: <input>/../results when it exists)")
    p.add_argument("--json", type=Path, default=None, help="also write the findings as JSON to this file")
    p.add_argument("--rules", action="store_true",
                   help="list the rules and what the v5.1 release checker and the official package do with each, then exit")


def run(args: argparse.Namespace) -> int:
    from mlperf_bnas.submission.checker import RULES, check_submission
    from mlperf_bnas.fileio import write_atomic

    if args.rules:
        for rule_id, rule in RULES.items():
            print(f"{rule_id:<26} release={rule.release:<5} official={rule.official:<5} "
                  f"smoke={'yes' if rule.smoke else 'no ':<3} {rule.text}")
        return 0
    root = args.input
    if root is None:
        raise UserError("--input is required: the submission root (the folder holding open/, e.g. $OUTPUT_DIR/submission)")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; pass the submission root (the folder holding open/)")
    if not any((root / d).is_dir() for d in ("open", "closed", "network")):
        raise UserError(f"{root}: no open/, closed/ or network/ folder; pass the submission root "
                        "(e.g. $OUTPUT_DIR/submission, not the submitter folder)")
    full = args.full_results
    # The submission root is $OUTPUT_DIR/submission: the full logs are in $OUTPUT_DIR/results.
    runs = OutputRoot(root.resolve().parent).tree.results_root
    if full is None and runs.is_dir():
        full = runs
    if full is not None and not full.is_dir():
        raise UserError(f"{full}: --full-results is not a folder")
    report = check_submission(root, full)
    for finding in report.findings:
        print(finding.line())
    if full is None:
        print("note: full accuracy logs not found; hashes and truncation were checked for form only "
              "(pass --full-results $OUTPUT_DIR/results)")
    print(report.summary())
    if args.json:
        write_atomic(args.json, json.dumps({
            "findings": [{"rule": f.rule, "severity": f.severity, "path": f.path, "message": f.message,
                          "official": RULES[f.rule].official, "release": RULES[f.rule].release}
                         for f in report.findings],
            "results": [list(r) for r in report.results],
            "smoke": report.is_smoke,
        }, indent=2) + "\n")
    return 1 if report.errors else 0
