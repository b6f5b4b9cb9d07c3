"""Accuracy-log truncation and hashing, as MLPerf's ``tools/submission/truncate_accuracy_log.py`` does it.

A submitted ``mlperf_log_accuracy.json`` keeps only its first and last 4096
characters (joined by ``\\n\\n...\\n\\n``) and must stay under 10 KiB; the
``accuracy.txt`` beside it ends with ``hash=<sha256 of the full log>`` so the
full log, kept outside the submission, can be matched to it later.

Unlike MLPerf's tool, nothing is modified in place without a copy: the
functions here read a source file and write the result atomically elsewhere.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from mlperf_bnas.errors import UserError
from mlperf_bnas.fileio import sha256_file, write_atomic

MAX_ACCURACY_LOG_SIZE = 10 * 1024
VIEWABLE_SIZE = 4096
ELLIPSIS = "\n\n...\n\n"
HASH_LINE = re.compile(r"^hash=([\w\d]+)$")


def hash_in_accuracy_txt(path: Path) -> str | None:
    """The ``hash=...`` value recorded in ``accuracy.txt`` (the first one, as the checker reads it)."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = HASH_LINE.match(line)
        if m:
            return m.group(1)
    return None


def truncated_text(full_log: Path) -> str:
    """First and last 4096 characters of the log; a log already that short is kept whole.

    Read from both ends of the file, never whole (a full accuracy log can be gigabytes).
    LoadGen's log is ASCII, so characters are bytes; anything else is refused."""
    size = full_log.stat().st_size
    with open(full_log, "rb") as fh:
        if size <= 2 * VIEWABLE_SIZE + len(ELLIPSIS):
            # MLPerf's tool cannot seek before the start of a short file; such a log
            # already satisfies the size rule, so it is submitted unchanged.
            return _ascii(fh.read(), full_log)
        head = fh.read(VIEWABLE_SIZE)
        fh.seek(size - VIEWABLE_SIZE)
        tail = fh.read(VIEWABLE_SIZE)
    return _ascii(head, full_log) + ELLIPSIS + _ascii(tail, full_log)


def _ascii(data: bytes, path: Path) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a LoadGen accuracy log (it holds non-ASCII bytes); "
                        "rerun the accuracy mode") from None


def accuracy_txt_with_hash(accuracy_txt: Path, full_log: Path) -> str:
    """``accuracy.txt`` ending with the full log's hash; an existing, different hash is an error."""
    if not accuracy_txt.is_file():
        raise UserError(f"{accuracy_txt}: missing; compute it first with `mlperf-bnas accuracy` "
                        "(the submission needs the accuracy result beside its log)")
    full_hash = sha256_file(full_log)
    text = accuracy_txt.read_text(encoding="utf-8", errors="replace")
    recorded = hash_in_accuracy_txt(accuracy_txt)
    if recorded is not None:
        if recorded != full_hash:
            raise UserError(f"{accuracy_txt}: records hash={recorded} but {full_log} hashes to {full_hash}; "
                            "the accuracy log changed after accuracy.txt was written: rerun `mlperf-bnas accuracy`")
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    return text + f"hash={full_hash}\n"


def is_truncated(log: Path) -> bool:
    with open(log, encoding="utf-8", errors="replace") as fh:
        fh.read(VIEWABLE_SIZE)
        return fh.read(len(ELLIPSIS)) == ELLIPSIS


def write_truncated(accuracy_txt: Path, full_log: Path, dst: Path) -> None:
    """Write ``dst/accuracy.txt`` (+hash of ``full_log``) and ``dst/mlperf_log_accuracy.json`` (truncated).

    A log that is already truncated cannot be hashed correctly, so it is refused
    rather than truncated twice.
    """
    if not full_log.is_file():
        raise UserError(f"{full_log}: missing; run the accuracy test (`mlperf-bnas run ... --mode accuracy`)")
    if is_truncated(full_log):
        raise UserError(f"{full_log}: already truncated; point at the full accuracy log "
                        "(results/<system>/<model>/<Scenario>/accuracy/ in the output folder)")
    txt = accuracy_txt_with_hash(accuracy_txt, full_log)
    log = truncated_text(full_log)
    write_atomic(dst / "accuracy.txt", txt)
    write_atomic(dst / "mlperf_log_accuracy.json", log)


def _to_truncate(root: Path) -> list[Path]:
    """The ``results/*/*/*/accuracy`` folders under a submission root whose full log still needs
    truncating (one already hashed and under the size limit is left alone, as MLPerf's tool does)."""
    accuracy_dirs = sorted(root.glob("*/*/results/*/*/*/accuracy"))
    if not accuracy_dirs:
        raise UserError(f"{root}: no <division>/<submitter>/results/<system>/<model>/<scenario>/accuracy folders found; "
                        "pass the folder that holds open/ (e.g. $OUTPUT_DIR/submission)")
    out = []
    for acc in accuracy_dirs:
        log, txt = acc / "mlperf_log_accuracy.json", acc / "accuracy.txt"
        if not log.is_file():
            continue
        if txt.is_file() and hash_in_accuracy_txt(txt) and log.stat().st_size < MAX_ACCURACY_LOG_SIZE:
            continue  # already hashed and truncated (same rule as MLPerf's tool)
        out.append(acc)
    return out


def truncate_tree(root: Path, backup: Path) -> list[Path]:
    """In-place truncation of every ``results/*/*/*/accuracy`` under a submission root.

    Each full log is first copied to ``backup`` (same relative path); a backup
    that already exists is never overwritten. Returns the accuracy folders changed.
    """
    root = root.resolve()
    changed = []
    for acc in _to_truncate(root):
        saved = backup.resolve() / acc.relative_to(root) / "mlperf_log_accuracy.json"
        if saved.exists():
            raise UserError(f"{saved}: a backup already exists; choose another --backup folder (nothing was changed for {acc})")
        saved.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(acc / "mlperf_log_accuracy.json", saved)
        write_truncated(acc / "accuracy.txt", saved, acc)
        changed.append(acc)
    return changed


def truncated_copy(src: Path, dst: Path) -> list[Path]:
    """A copy of the submission tree ``src`` at ``dst`` (which must not exist) whose accuracy logs are
    truncated, read from ``src``: the full logs are never copied (a RetinaNet log is up to 24,781
    images x 300 detections x 56 hex characters = 416 MB, one per scenario), and ``src`` is left
    as it was. Returns the accuracy folders of ``dst`` that were truncated."""
    src = src.resolve()
    todo = _to_truncate(src)
    full_logs = {str(acc / "mlperf_log_accuracy.json") for acc in todo}

    def leave_full_logs(folder: str, names: list[str]) -> list[str]:
        return [n for n in names if n == "mlperf_log_accuracy.json" and str(Path(folder) / n) in full_logs]

    shutil.copytree(src, dst, ignore=leave_full_logs)
    changed = []
    for acc in todo:
        write_truncated(acc / "accuracy.txt", acc / "mlperf_log_accuracy.json", dst / acc.relative_to(src))
        changed.append(dst / acc.relative_to(src))
    return changed
