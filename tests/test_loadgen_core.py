"""The LoadGen core (QSL, SUTs, runner) through real LoadGen, one process per run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_bnas.loadgen.logs import read_detail_log

DRIVER = Path(__file__).with_name("loadgen_driver.py")
V51_SEEDS = {
    "effective_qsl_rng_seed": 1780908523862526354,
    "effective_sample_index_rng_seed": 14771362308971278857,
    "effective_schedule_rng_seed": 18209322760996052031,
}

SHORT_CONF = """\
*.Offline.min_duration = 200
*.Offline.min_query_count = 256
*.Offline.target_qps = 10000
*.Server.min_duration = 500
*.Server.min_query_count = 600
*.Server.target_qps = 400
*.Server.target_latency = 50
"""


def drive(tmp_path: Path, scenario: str, *extra: str, conf: str = SHORT_CONF):
    conf_path = tmp_path / "user.conf"
    conf_path.write_text(conf)
    log_dir = tmp_path / "results" / scenario / "run_1"
    proc = subprocess.run([sys.executable, str(DRIVER), scenario, str(conf_path), str(log_dir), *extra],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}
    return proc, out, log_dir


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_valid_run_with_v51_seeds(tmp_path, scenario):
    proc, out, log_dir = drive(tmp_path, scenario)
    assert proc.returncode == 0, proc.stderr
    assert out["summary"]["Result is"] == "VALID"
    detail = read_detail_log(log_dir / "mlperf_log_detail.txt")
    assert not detail.errors
    for key, seed in V51_SEEDS.items():
        assert detail.get(key) == seed
    assert detail.get("effective_scenario") == scenario
    assert out["completed"] == detail.get("result_query_count", out["completed"]) or out["completed"] > 0


def test_accuracy_responses_route_to_their_samples(tmp_path):
    proc, _out, log_dir = drive(tmp_path, "Offline", "--mode", "accuracy", "--samples", "100")
    assert proc.returncode == 0, proc.stderr
    import numpy as np
    entries = json.loads((log_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(100))
    for e in entries:
        value = np.frombuffer(bytes.fromhex(e["data"]), np.float32)
        assert value.tolist() == [float(e["qsl_idx"])]


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_failing_inference_completes_every_query_then_fails(tmp_path, scenario):
    proc, out, log_dir = drive(tmp_path, scenario, "--fail-every", "3")
    assert proc.returncode == 1, proc.stderr
    assert "injected failure" in out["failed"]
    assert out["failed_samples"] > 0 and out["completed"] > 0
    # A failed run never lands in results/; its logs are kept in the archive.
    assert not log_dir.exists()
    assert list((log_dir.parent / "archive").glob("failed-*/run_1/mlperf_log_detail.txt"))


def test_rerun_moves_earlier_results_to_archive(tmp_path):
    proc, _, log_dir = drive(tmp_path, "Offline")
    assert proc.returncode == 0
    first = (log_dir / "mlperf_log_detail.txt").read_text()
    proc, _, log_dir = drive(tmp_path, "Offline")
    assert proc.returncode == 0
    archived = list((log_dir.parent / "archive").glob("*/run_1/mlperf_log_detail.txt"))
    assert len(archived) == 1 and archived[0].read_text() == first


def test_stray_audit_config_is_ignored(tmp_path):
    # An audit.config in the working directory would silently turn this into a compliance run.
    (tmp_path / "audit.config").write_text("*.*.mode = 2\n*.*.accuracy_log_sampling_target = 1000\n")
    proc, out, log_dir = drive(tmp_path, "Offline")
    assert proc.returncode == 0, proc.stderr
    detail = read_detail_log(log_dir / "mlperf_log_detail.txt")
    assert detail.get("effective_accuracy_log_sampling_target", 0) == 0


def test_rejected_user_conf_is_a_clear_error(tmp_path):
    # LoadGen would reject this line without saying which one; our check names it first.
    proc, _, _ = drive(tmp_path, "Offline", conf="this line is not a setting\n")
    assert proc.returncode != 0
    assert "user.conf:1: expected 'this = <value>'" in proc.stderr


def test_unknown_user_conf_key_is_named(tmp_path):
    # LoadGen itself ignores unknown keys: a typo would silently run with default settings.
    proc, _, _ = drive(tmp_path, "Offline", conf=SHORT_CONF + "*.Offline.target_qsp = 10\n")
    assert proc.returncode != 0
    assert "user.conf:8: LoadGen has no setting 'target_qsp'" in proc.stderr


SERVER_300 = """\
*.Server.min_duration = 2000
*.Server.min_query_count = 600
*.Server.target_qps = 300
*.Server.target_latency = 50
"""


@pytest.mark.parametrize("batch_size, valid", [(1, False), (8, True)])
def test_server_dynamic_batching_raises_capacity(tmp_path, batch_size, valid):
    """300 QPS on one simulated worker serving a batch of b in 5 + 0.5*b ms: one sample at a
    time it serves 182/s and the queue grows without bound; batching up to 8 (889/s at full
    batches) keeps p99 under 50 ms, and the batches it forms are larger than one sample."""
    proc, out, _log_dir = drive(tmp_path, "Server", "--backend", "simulated", "--batch-size", str(batch_size),
                                conf=SERVER_300)
    assert proc.returncode == 0, proc.stderr
    assert (out["summary"]["Result is"] == "VALID") is valid, out["summary"]
    if batch_size > 1:
        assert out["completed"] / out["batches"] > 1.2


class _QueueingBackend:
    """A backend whose submit only queues (as the pytorch backend's does): one worker answers
    each batch after a millisecond. Counts the gathered batches it holds at once."""

    def __init__(self, batch_size: int, parallelism: int = 1):
        import queue
        import threading

        self.batch_size, self.parallelism, self.reads_input = batch_size, parallelism, True
        self.queue: queue.Queue = queue.Queue()
        self.held = self.most_held = 0
        self.lock = threading.Lock()
        self.cancel = lambda: None        # abort() asks the backend to drop queued work
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()

    def submit(self, batch, size, done):
        with self.lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
        self.queue.put((batch, done))

    def _work(self):
        import time

        while True:
            item = self.queue.get()
            if item is None:
                return
            batch, done = item
            time.sleep(0.001)
            with self.lock:
                self.held -= 1
            done(batch[:, :1].copy(), None)


def test_offline_hands_a_queueing_backend_a_few_batches_at_a_time(monkeypatch):
    """An Offline query holds every sample of the run (24,576 or more under the real rules); each
    multi-sample batch is a gathered copy, and a backend that only queues held all of them at once
    (RetinaNet at batch 2: 44 GiB). Now at most IN_FLIGHT_PER_SLOT per backend slot: here 400
    samples in batches of 4 (100 batches), never more than 8 held, each sample answered once."""
    import threading
    from types import SimpleNamespace

    import numpy as np

    from mlperf_bnas.loadgen import sut as S
    from mlperf_bnas.loadgen.postprocess import POSTPROCESSORS
    from mlperf_bnas.loadgen.qsl import QSL

    answered: list[int] = []
    monkeypatch.setattr(S.lg, "QuerySamplesComplete", lambda responses: answered.extend(r.id for r in responses))
    monkeypatch.setattr(S.lg, "QuerySampleResponse", lambda i, ptr, n: SimpleNamespace(id=i))

    class Source:
        def __len__(self):
            return 50

        def load(self, indices):
            return np.repeat(np.asarray(indices, np.float32)[:, None], 4, axis=1)

    qsl = QSL(Source(), 50)
    qsl.load_samples(list(range(50)))
    backend = _QueueingBackend(batch_size=4)
    sut = S.make_sut("Offline", backend, qsl, POSTPROCESSORS.get("none"))
    query = [SimpleNamespace(id=1000 + k, index=k % 50) for k in range(400)]
    sut.issue_queries(query)
    backend.queue.put(None)
    backend.worker.join(timeout=30)
    assert sorted(answered) == [1000 + k for k in range(400)]
    assert backend.most_held == 8, backend.most_held      # was 100: every batch of the query at once
    assert S.OfflineSUT.IN_FLIGHT_PER_SLOT == 8

    # A stop while the query waits for a slot ends the wait at once (the rest is answered by abort).
    answered.clear()
    slow = _QueueingBackend(batch_size=4)
    slow.queue.put(None)                   # the worker quits: nothing completes any more
    slow.worker.join()
    sut = S.make_sut("Offline", slow, qsl, POSTPROCESSORS.get("none"))
    threading.Timer(0.2, sut.abort, args=("interrupted (test)",)).start()
    sut.issue_queries(query)
    assert sorted(answered) == [1000 + k for k in range(400)] and slow.most_held == 8
