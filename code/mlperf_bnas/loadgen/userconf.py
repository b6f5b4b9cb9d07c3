"""LoadGen ``user.conf``: read exactly as LoadGen 5.1 reads it, checked before LoadGen sees it, and written.

The one reader and writer of the format in this package (runs, packaging, the
checker and the tuner all use it).

How LoadGen reads a line (``TestSettings::FromConfig``, test_settings_internal.cc):
it splits the line on whitespace; the first token is the key, the second must be
``=``, every further token must be a number and the last one wins; a lone ``#``
token before the value ends the line. So ``a.b.c=1`` (no spaces) is one token and
is *silently ignored*, ``x = 5 # note`` is an error (``#`` is not a number), and a
line whose first token merely starts with ``#`` (``#x = 1``) is an error too.
Keys are ``<model>.<scenario>.<setting>``; a value is found by the exact key, then
``*.<scenario>``, then ``<model>.*``, then ``*.*``; a later line with the same
key replaces an earlier one. Unknown settings and unknown model names are
ignored without a word, integers are read with ``strtoull`` (``-5`` wraps to a
huge number, ``1.5`` becomes ``1``, ``010`` is octal) and Server ``target_latency``
is an integer in ms.

``parse``/``read`` turn every one of those silent surprises into an error naming
the file and line; ``run_notes`` adds what a run should be told (lines for other
models, unknown model names, no line at all for this model). ``mismatches``
compares a conf with the settings a run's detail log recorded (packaging and the
checker use it to find the conf that produced a result). The tuner's generated
confs (marker, copied base section, backend options on a comment line) are
written and read here too.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_bnas.errors import UserError

#: Model names in LoadGen 5.1's embedded mlperf.conf: a line for any other name applies to nothing.
LOADGEN_MODELS = frozenset("""
3d-unet bert deepseek-r1 dlrm dlrm-v2 gptj llama2-70b llama2-70b-interactive llama3_1-405b
llama3_1-405b-interactive llama3_1-8b llama3_1-8b-edge llama3_1-8b-interactive mixtral-8x7b
pointpainting resnet50 retinanet rgat rnnt ssd-mobilenet stable-diffusion-xl whisper
""".split())
SCENARIOS = frozenset({"SingleStream", "MultiStream", "Server", "Offline"})

# Every setting LoadGen 5.1 reads from a user.conf, by how it reads the value:
#   uint: strtoull (a count, a duration in ms, a seed, a 0/1 flag); float: strtod;
#   rate / latency: must be > 0 (a non-positive one is never what anyone meant);
#   percentile: strtod x 0.01, so 99 means the 99th percentile.
_KINDS = {
    **dict.fromkeys("""mode min_duration max_duration min_query_count max_query_count qsl_rng_seed
        sample_index_rng_seed schedule_rng_seed accuracy_log_rng_seed accuracy_log_sampling_target
        print_timestamps performance_issue_unique performance_issue_same performance_issue_same_index
        performance_sample_count_override performance_sample_count sample_concatenate_permutation test05
        test05_qsl_rng_seed test05_sample_index_rng_seed test05_schedule_rng_seed samples_per_query
        max_async_queries coalesce_queries server_num_issue_query_threads use_token_latencies
        infer_token_latencies token_latency_scaling_factor enable_early_stopping
        early_stopping_min_queries""".split(), "uint"),
    "accuracy_log_probability": "float",
    "target_qps": "rate",
    "target_latency": "latency",
    "ttft_latency": "latency",
    "tpot_latency": "latency",
    "target_latency_percentile": "percentile",
}
KEYS = frozenset(_KINDS)
# Server's target_latency (and the token latencies) are read with strtoull: whole milliseconds.
# SingleStream/MultiStream target_latency is read with strtod.
_FLOAT_LATENCY_SCENARIOS = ("SingleStream", "MultiStream")

_STRTOD = re.compile(r"^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)$", re.I)
_STRTOUL = re.compile(r"^[+-]?(?:0[xX][0-9a-fA-F]+|\d+)$")


@dataclass(frozen=True)
class Line:
    """One ``<model>.<scenario>.<key> = <value>`` line, as LoadGen will apply it."""

    number: int
    model: str
    scenario: str
    key: str
    value: str           # the token LoadGen keeps (the last value token)

    @property
    def name(self) -> str:
        return f"{self.model}.{self.scenario}.{self.key}"

    def applies_to(self, model: str, scenario: str) -> bool:
        return self.model in ("*", model) and self.scenario in ("*", scenario)


@dataclass
class UserConf:
    """A parsed user.conf (``path`` None for text that is not a file yet)."""

    path: Path | None
    lines: list[Line] = field(default_factory=list)

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "user.conf"

    def lookup(self, model: str, scenario: str, key: str) -> Line | None:
        """The line LoadGen takes ``key`` from for ``model``/``scenario`` (its precedence), or None."""
        last: dict[str, Line] = {}
        for line in self.lines:
            last[line.name] = line          # a later line with the same key wins, as in LoadGen's map
        for name in (f"{model}.{scenario}.{key}", f"*.{scenario}.{key}", f"{model}.*.{key}", f"*.*.{key}"):
            if name in last:
                return last[name]
        return None

    def settings(self, model: str, scenario: str) -> dict[str, str]:
        """Every setting that applies to ``model``/``scenario``: ``{key: value}`` as LoadGen resolves it."""
        keys = dict.fromkeys(line.key for line in self.lines if line.applies_to(model, scenario))
        return {key: self.lookup(model, scenario, key).value for key in keys}  # type: ignore[union-attr]


def _error(where: str, number: int, message: str) -> UserError:
    return UserError(f"{where}:{number}: {message}")


def _check_value(where: str, number: int, scenario: str, key: str, token: str) -> None:
    kind = _KINDS[key]
    if kind == "latency" and scenario in _FLOAT_LATENCY_SCENARIOS and key == "target_latency":
        kind = "float_latency"
    if kind in ("uint", "latency"):
        if not _STRTOUL.match(token):
            if _STRTOD.match(token):
                raise _error(where, number, f"{key} = {token}: LoadGen reads {key} as a whole number "
                                            f"({'milliseconds' if kind == 'latency' else 'an integer'}) and would "
                                            f"silently use {_strtoull_prefix(token)}; write a whole number")
            raise _error(where, number, f"{key} = {token}: not a number")
        if token.startswith("-"):
            raise _error(where, number, f"{key} = {token}: must not be negative (LoadGen reads it as an unsigned "
                                        "number, so it would wrap to a huge value)")
        digits = token.lstrip("+")
        if len(digits) > 1 and digits.startswith("0") and not digits[:2].lower() == "0x":
            raise _error(where, number, f"{key} = {token}: a leading zero makes LoadGen read it as octal "
                                        f"({int(digits, 8) if set(digits) <= set('01234567') else 'invalid'}); "
                                        "drop the zero")
        value: float = int(digits, 0)
    else:
        if not (_STRTOD.match(token) or _STRTOUL.match(token)):
            raise _error(where, number, f"{key} = {token}: not a number")
        value = float(int(token, 16)) if token.lower().lstrip("+-").startswith("0x") else float(token)
    if kind in ("rate", "latency", "float_latency") and not value > 0:
        what = "a rate (queries per second)" if kind == "rate" else "a latency (ms)"
        raise _error(where, number, f"{key} = {token}: {what} must be greater than 0")
    if kind == "percentile" and not 0 < value <= 100:
        raise _error(where, number, f"{key} = {token}: a percentile in percent (LoadGen multiplies by 0.01), "
                                    "greater than 0 and at most 100, e.g. 99")


def _strtoull_prefix(token: str) -> str:
    m = re.match(r"^\+?(\d*)", token)
    return m.group(1) or "0" if m else "0"


def parse(text: str, path: Path | None = None) -> UserConf:
    """Parse user.conf text the way LoadGen does; anything LoadGen would reject or misread silently
    is a ``UserError`` naming the line."""
    conf = UserConf(Path(path) if path else None)
    where = conf.where
    for number, raw in enumerate(text.splitlines(), 1):
        tokens = raw.split()
        if not tokens or tokens[0] == "#":
            continue
        key = tokens[0]
        if key.startswith("#"):
            if len(tokens) == 1:
                continue        # one token and no '=': LoadGen stores nothing, like a comment
            raise _error(where, number, f"LoadGen reads {key!r} as a key, not a comment (only a lone '#' "
                                        "starts one) and rejects the line; put a space after '#'")
        if len(tokens) == 1:
            if "=" in key:
                raise _error(where, number, f"{key!r}: LoadGen needs spaces around '=' and silently ignores "
                                            "this line; write 'key = value'")
            raise _error(where, number, f"{key!r}: expected '<model>.<scenario>.<key> = <value>'")
        if tokens[1] != "=":
            raise _error(where, number, f"expected '{key} = <value>' (spaces around '='), found {raw.strip()!r}")
        values = tokens[2:]
        if any(v.startswith("#") for v in values):
            raise _error(where, number, "LoadGen does not allow a comment after a value; "
                                        "put the comment on its own line")
        if not values:
            raise _error(where, number, f"{key} has no value")
        if len(values) > 1:
            raise _error(where, number, f"{key} has {len(values)} values ({' '.join(values)}); LoadGen would "
                                        "silently use the last one: keep one")
        parts = key.split(".")
        if len(parts) != 3 or not all(parts):
            raise _error(where, number, f"{key!r} is not <model>.<scenario>.<key> (e.g. resnet50.Offline.target_qps)")
        model, scenario, name = parts
        if scenario != "*" and scenario not in SCENARIOS:
            raise _error(where, number, f"unknown scenario {scenario!r} in {key!r}; valid: "
                                        f"{', '.join(sorted(SCENARIOS | {'*'}))}")
        if name not in KEYS:
            hint = difflib.get_close_matches(name, KEYS, n=1)
            raise _error(where, number, f"LoadGen has no setting {name!r} (it would be ignored silently)"
                                        + (f"; did you mean {hint[0]!r}?" if hint else
                                           f"; valid settings: {', '.join(sorted(KEYS))}"))
        _check_value(where, number, scenario, name, values[0])
        conf.lines.append(Line(number, model, scenario, name, values[0]))
    return conf


def read(path: str | Path) -> UserConf:
    """``parse`` the file at ``path`` (a missing or unreadable file is a ``UserError``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: user.conf not found; set USER_CONF (or --user-conf) to an existing file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text file ({exc}); pass a LoadGen user.conf") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror})") from None
    return parse(text, path)


def run_notes(conf: UserConf, model: str, scenario: str) -> tuple[list[str], list[str]]:
    """``(warnings, notes)`` for a run of ``model``/``scenario`` with ``conf``.

    Warnings: a line whose model is not a LoadGen model name (it applies to nothing);
    no line at all for this model and scenario (LoadGen's full defaults apply).
    Notes: lines for other models, which this run does not use.
    """
    where = conf.where
    warnings: list[str] = []
    notes: list[str] = []
    for line in conf.lines:
        if line.model != "*" and line.model not in LOADGEN_MODELS:
            hint = difflib.get_close_matches(line.model, LOADGEN_MODELS, n=1)
            warnings.append(f"{where}:{line.number}: {line.model!r} is not a LoadGen model name, so LoadGen "
                            f"applies this line to nothing" + (f"; did you mean {hint[0]!r}?" if hint else ""))
    others: dict[str, list[int]] = {}
    for line in conf.lines:
        if line.model not in ("*", model) and line.model in LOADGEN_MODELS:
            others.setdefault(line.model, []).append(line.number)
    for other, numbers in sorted(others.items()):
        notes.append(f"{where}: line(s) {', '.join(map(str, numbers))} set {other}, not {model}: "
                     "this run does not use them")
    if not any(line.applies_to(model, scenario) for line in conf.lines):
        warnings.append(f"{where}: no line applies to {model} {scenario}, so LoadGen runs with its full "
                        f"defaults for {model} (e.g. 600 s minimum duration); add '{model}.{scenario}.<key> = "
                        "<value>' lines, or pass the conf written for this benchmark")
    return warnings, notes


# ---------------------------------------------------------------------------
# conf vs. the settings a run's log recorded
# ---------------------------------------------------------------------------
def _log_keys(key: str, scenario: str) -> list[tuple[str, float]]:
    """Detail-log keys (and unit scale) that record a user.conf key."""
    table = {
        "min_duration": [("requested_min_duration_ms", 1.0)],
        "max_duration": [("requested_max_duration_ms", 1.0)],
        "min_query_count": [("requested_min_query_count", 1.0)],
        "max_query_count": [("requested_max_query_count", 1.0)],
        "performance_sample_count_override": [("requested_performance_sample_count_override", 1.0)],
        "target_qps": [("requested_server_target_qps", 1.0)] if scenario == "Server"
        else [("requested_offline_expected_qps", 1.0)],
        "target_latency": [("requested_server_target_latency_ns", 1e6)] if scenario == "Server"
        else [("requested_single_stream_expected_latency_ns", 1e6)] if scenario == "SingleStream"
        else [("requested_multi_stream_expected_latency_ns", 1e6)] if scenario == "MultiStream" else [],
    }
    return table.get(key, [])


def mismatches(conf: UserConf, detail: Any, model: str, scenario: str) -> list[str]:
    """Settings of ``conf`` that disagree with what the detail log (``DetailLog``) says LoadGen was asked for."""
    out = []
    for key, value in conf.settings(model, scenario).items():
        for log_key, scale in _log_keys(key, scenario):
            logged = detail.get(log_key)
            if logged is None:
                continue
            try:
                if abs(float(int(value, 0) if _STRTOUL.match(value) else float(value)) * scale - float(logged)) \
                        > 1e-6 * max(1.0, abs(float(logged))):
                    out.append(f"{key}={value} but the log has {log_key}={logged}")
            except (TypeError, ValueError):
                out.append(f"{key}={value} is not a number")
    return out


# ---------------------------------------------------------------------------
# writing: lines, trial confs and the tuner's generated conf
# ---------------------------------------------------------------------------
MARKER = "# Generated by mlperf-bnas tune"
_BASE_BEGIN = "# ---- base conf (copied from {}) ----"
_BASE_END = "# ---- end of base conf ----"
_OPTIONS_PREFIX = "# mlperf-bnas backend_options "


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.1f}"
    return str(value)


def override_lines(model: str, scenario: str, values: dict[str, Any]) -> str:
    """``<model>.<scenario>.<key> = <value>`` lines. Model- and scenario-specific keys take
    precedence over any wildcard line of the base conf in LoadGen."""
    text = "".join(f"{model}.{scenario}.{key} = {format_value(value)}\n" for key, value in values.items())
    parse(text)         # never write a line LoadGen would reject or misread
    return text


def is_generated(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline().startswith(MARKER)
    except (FileNotFoundError, IsADirectoryError):
        return False


def base_conf_text(path: Path) -> str:
    """The user's conf lines. For a conf we generated earlier, only its copied base section,
    so tuning from a tuned conf does not stack old tuned values under the new ones."""
    path = Path(path)
    read(path)                  # the base must be a conf LoadGen reads as meant
    text = path.read_text(encoding="utf-8")
    if not text.startswith(MARKER):
        return text if text.endswith("\n") or not text else text + "\n"
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines) if line.startswith("# ---- base conf")), None)
    end = next((i for i, line in enumerate(lines) if line == _BASE_END), None)
    if begin is None or end is None or end < begin:
        raise UserError(f"{path}: generated by mlperf-bnas tune but its base section is damaged; "
                        "pass the original user.conf with --user-conf")
    return "".join(line + "\n" for line in lines[begin + 1:end])


def trial_conf_text(base: str, model: str, scenario: str, values: dict[str, Any]) -> str:
    return base + "# mlperf-bnas tune trial\n" + override_lines(model, scenario, values)


def check_replaceable(path: Path) -> None:
    """Refuse to replace a file at ``path`` that mlperf-bnas tune did not write."""
    if path.exists() and not is_generated(path):
        raise UserError(f"{path}: exists and was not written by mlperf-bnas tune (no '{MARKER}' first line); "
                        "move it away or choose another file with --conf-out")


def tuned_conf_text(base_path: Path, base: str, model: str, header: list[str],
                    tuned: dict[str, dict[str, Any]]) -> str:
    """The tuned user.conf: marker, header comments, the base conf, then per-scenario values."""
    out = [MARKER + "; re-running tune replaces this file (copy it to edit by hand).\n"]
    out += [f"# {line}\n" for line in header]
    out.append(_BASE_BEGIN.format(base_path) + "\n")
    out.append(base)
    out.append(_BASE_END + "\n")
    for scenario, values in tuned.items():
        conf_values = {k: v for k, v in values.items() if k != "backend_options"}
        options = values.get("backend_options") or {}
        out.append(f"# {scenario}: tuned by mlperf-bnas tune\n")
        # Backend options are not LoadGen settings; this comment line carries them for
        # `tuned_backend_options` (LoadGen ignores comments).
        out.append(f"{_OPTIONS_PREFIX}{scenario} {json.dumps(options, sort_keys=True)}\n")
        out.append(override_lines(model, scenario, conf_values))
    return "".join(out)


def tuned_backend_options(conf: Path, scenario: str) -> dict[str, Any]:
    """Backend options the tuner chose for ``scenario``, read from a tuned conf ({} for any other conf).

    ``mlperf-bnas run`` applies them when it runs with a tuned conf (``--set`` still wins)."""
    if not is_generated(conf):
        return {}
    for line in Path(conf).read_text(encoding="utf-8").splitlines():
        if line.startswith(_OPTIONS_PREFIX + scenario + " "):
            try:
                value = json.loads(line[len(_OPTIONS_PREFIX) + len(scenario) + 1:])
            except json.JSONDecodeError:
                raise UserError(f"{conf}: damaged backend_options line for {scenario}; re-run mlperf-bnas tune") from None
            if not isinstance(value, dict):
                raise UserError(f"{conf}: backend_options line for {scenario} is not a mapping; re-run mlperf-bnas tune")
            return value
    return {}
