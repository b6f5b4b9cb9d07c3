"""Our checker applies the v5.1 scenario tables per system type as the round's release checker does.

The release checker (``tools/submission/submission_checker.py`` at v5.1.1) rejects a benchmark
that is not in the system type's table in every division ("has an invalid model": ResNet-50
is edge-only in v5.1), and rejects missing required or unlisted scenarios in closed and
network only; the open division waives both. Skeleton trees are enough for these rules: the
other findings on them (no logs, no measurements) are not looked at here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlperf_bnas.submission import checker as C
from mlperf_bnas.submission import rules as R

TABLE_RULES = {"system-type-benchmark", "scenarios-missing", "scenarios-required", "scenario-unlisted"}


def _tree(root: Path, division: str, system_type: str, results: dict[str, tuple[str, ...]]) -> Path:
    sub = root / "submission" / division / "Org"
    for model, scenarios in results.items():
        for scenario in scenarios:
            (sub / "results" / "sys1" / model / scenario).mkdir(parents=True)
    (sub / "systems").mkdir(parents=True)
    (sub / "systems" / "sys1.json").write_text(json.dumps(
        {"division": division, "submitter": "Org", "status": "rdi", "system_type": system_type}))
    return root / "submission"


def _table_findings(root: Path) -> list[tuple[str, str, str]]:
    report = C.check_submission(root)
    return sorted((f.rule, f.severity, f.path.split("/results/")[-1]) for f in report.findings if f.rule in TABLE_RULES)


def test_resnet_under_datacenter_is_rejected_in_every_division(tmp_path):
    for division in ("open", "closed"):
        root = _tree(tmp_path / division, division, "datacenter", {"resnet50": ("Offline", "Server")})
        findings = _table_findings(root)
        assert findings == [("system-type-benchmark", "error", "sys1/resnet50")], findings
        assert C.RULES["system-type-benchmark"].release == "fail"


def test_datacenter_edge_evaluates_both_benchmarks_and_open_waives_missing_scenarios(tmp_path):
    root = _tree(tmp_path, "open", "datacenter,edge", {"resnet50": ("Offline", "Server"),
                                                       "retinanet": ("Offline", "Server")})
    findings = _table_findings(root)
    assert findings == [("scenarios-missing", "warning", "sys1/resnet50"),
                        ("scenarios-missing", "warning", "sys1/retinanet")], findings
    report = C.check_submission(root)
    text = next(f.message for f in report.findings if f.rule == "scenarios-missing")
    assert "missing SingleStream, MultiStream" in text and "open division waives" in text


def test_closed_division_fails_missing_and_unlisted_scenarios(tmp_path):
    root = _tree(tmp_path, "closed", "datacenter", {"retinanet": ("Offline", "SingleStream")})
    findings = _table_findings(root)
    assert findings == [("scenario-unlisted", "error", "sys1/retinanet"),
                        ("scenarios-required", "error", "sys1/retinanet")], findings


def test_complete_edge_tree_has_no_table_finding(tmp_path):
    root = _tree(tmp_path, "open", "edge", {"resnet50": R.REQUIRED_SCENARIOS["edge"]["resnet"]})
    assert _table_findings(root) == []


@pytest.mark.parametrize("system_type", ["datacenter", "edge", "datacenter,edge", "edge,datacenter"])
def test_tables_are_the_v51_release_checkers(system_type):
    """The values of the release checker's required-scenarios-<type> for our two benchmarks."""
    expected = {
        "datacenter": {"retinanet": {"Server", "Offline"}},
        "edge": {"resnet": {"SingleStream", "MultiStream", "Offline"},
                 "retinanet": {"SingleStream", "MultiStream", "Offline"}},
        "datacenter,edge": {"resnet": {"SingleStream", "MultiStream", "Offline", "Server"},
                            "retinanet": {"SingleStream", "MultiStream", "Offline", "Server"}},
    }
    got = {model: set(s) for model, s in R.REQUIRED_SCENARIOS[system_type].items()}
    assert got == expected["datacenter,edge" if system_type == "edge,datacenter" else system_type]
    assert R.OPTIONAL_SCENARIOS[system_type] == {}


def test_every_rule_says_what_both_official_checkers_do():
    assert all(r.release in ("fail", "logs", "no") and r.official in ("fail", "logs", "no") for r in C.RULES.values())
