"""clipadapt's torch threads: a fair share of the cores, following the machine's load,
overridable by a setting and an environment variable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from clipadapt import threads
from clipadapt.config import RunConfig
from clipadapt.errors import ClipAdaptError


@pytest.fixture
def share(monkeypatch):
    """A fresh ThreadShare; torch's thread count restored afterwards."""
    saved = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fresh = threads.ThreadShare()
    fresh.cores = list(range(4))
    yield fresh
    torch.set_num_threads(saved)


def test_fair_threads_leave_busy_cores_to_others():
    assert threads.fair_threads(2, 0.0) == 2
    assert threads.fair_threads(2, 0.3) == 2  # a shell or an editor does not take a core away
    assert threads.fair_threads(2, 0.8) == 1
    assert threads.fair_threads(2, 4.0) == 1  # never below one
    assert threads.fair_threads(16, 4.2) == 12


def test_others_busy_cores_subtracts_this_process():
    before = threads.CpuSample(at=10.0, all_busy=100.0, own=5.0)
    after = threads.CpuSample(at=12.0, all_busy=104.0, own=7.0)  # 4 busy core-seconds, 2 of them ours
    assert threads.others_busy_cores(before, after) == pytest.approx(1.0)


def test_auto_follows_the_load_while_predicting(share, monkeypatch):
    """Readings scripted: idle at the start, then others keep 3 of the 4 cores busy, then none."""
    clock = iter([0.0, 0.15, 5.0, 10.0])
    readings = iter([(0.0, 0.0), (0.0, 0.0), (15.0, 0.0), (15.0, 0.0)])  # (all busy, own) seconds

    def sample(cores):
        busy, own = next(readings)
        return threads.CpuSample(next(clock), busy, own)

    monkeypatch.setattr(threads, "read_sample", sample)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert share.start("auto") == 4 and torch.get_num_threads() == 4
    monkeypatch.setattr(threads.time, "monotonic", lambda: 5.0)
    share.recheck()  # 15 busy seconds in 4.85 s: about 3 cores held by others
    assert share.threads == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads.time, "monotonic", lambda: 10.0)
    share.recheck()  # nothing else ran since
    assert share.threads == 4 and torch.get_num_threads() == 4


def test_a_number_is_fixed_and_the_environment_overrides_the_config(share, monkeypatch):
    monkeypatch.setattr(threads, "read_sample", lambda cores: pytest.fail("a fixed count reads no load"))
    assert share.start(3) == 3 and torch.get_num_threads() == 3
    share.recheck()
    assert torch.get_num_threads() == 3
    monkeypatch.setenv(threads.ENV, "2")
    assert share.start(3) == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv(threads.ENV, "torch")
    assert share.start(3) is None


def test_omp_num_threads_set_by_the_user_is_kept(share, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.resolve_setting("auto") == 1
    assert threads.resolve_setting(3) == 3  # an explicit train.threads wins over it


@pytest.mark.parametrize("value", ["many", "0", "-2", "1.5"])
def test_bad_settings_are_one_clear_error(monkeypatch, value):
    monkeypatch.setenv(threads.ENV, value)
    with pytest.raises(ClipAdaptError, match=f"CLIPADAPT_THREADS = '{value}'"):
        threads.resolve_setting()


def test_train_threads_in_a_config_is_checked():
    assert RunConfig.model_validate({"train": {"threads": 2}}).train.threads == 2
    assert RunConfig.model_validate({}).train.threads == "auto"
    with pytest.raises(Exception, match="threads must be at least 1"):
        RunConfig.model_validate({"train": {"threads": 0}})


def _run(code: str, **env) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", threads.ENV, "OMP_NUM_THREADS")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**full, **env}, capture_output=True,
                          text=True, check=True, timeout=120).stdout.strip()


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) != 2,
                    reason="reads /proc/stat on a 2-core machine")
def test_beside_a_busy_program_a_run_takes_one_thread_of_two():
    """A real reading: a busy loop in another process holds one of the two cores."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        chosen = _run("""
            import time
            from clipadapt.threads import share_cores
            time.sleep(0.5)  # the spinner is running by now
            print(share_cores())
        """)
    finally:
        spinner.kill()
        spinner.wait()
    assert chosen == "1"


def test_a_caller_without_a_setting_keeps_the_one_applied(share, monkeypatch):
    """A Ray actor fixes its share of the node; predict_images inside it asks with no setting."""
    monkeypatch.setattr(threads, "read_sample", lambda cores: None)  # no /proc/stat: auto takes every core
    assert share.start(2) == 2
    assert share.start(None) == 2 and torch.get_num_threads() == 2
    assert share.start("auto") == 4  # a run's own train.threads still applies


def test_only_the_main_thread_follows_the_load(share, monkeypatch):
    """Served or pooled predictions run in other threads: a count changed under them would
    change their last bits, so they never re-read the load."""
    import threading as threading_module

    clock = iter([0.0, 0.15, 5.0])
    readings = iter([(0.0, 0.0), (0.0, 0.0), (15.0, 0.0)])

    def sample(cores):
        busy, own = next(readings)
        return threads.CpuSample(next(clock), busy, own)

    monkeypatch.setattr(threads, "read_sample", sample)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert share.start("auto") == 4
    monkeypatch.setattr(threads.time, "monotonic", lambda: 5.0)
    worker = threading_module.Thread(target=share.recheck)
    worker.start()
    worker.join()
    assert share.threads == 4  # a worker thread left the count alone
    share.recheck()
    assert share.threads == 1  # the main thread follows the load


def test_a_bench_cell_finished_before_train_threads_existed_is_still_read(tmp_path):
    """The thread count changes speed (and last bits), not what a cell measures: a grid's
    finished cells stay valid whatever train.threads is, and cells written before the
    setting existed (no 'threads' key) are read, not refused as changed."""
    import json

    from clipadapt.protocols.protocol import Cell
    from clipadapt.protocols.runner import RESULT, _compared, read_result
    from clipadapt.config import validate_config

    cfg = validate_config({"method": "linear_probe", "train": {"epochs": 2}}, check=False)
    stored = _compared(cfg)
    assert "threads" not in stored["train"]
    (tmp_path / RESULT).write_text(json.dumps({"config": stored, "scores": {"test": {"accuracy": 0.5}}}))
    for threads_now in ("auto", 1, "torch"):
        now = cfg.model_copy(update={"train": cfg.train.model_copy(update={"threads": threads_now})})
        cell = Cell("birds", "linear_probe", 4, 1, tmp_path, now)
        assert read_result(tmp_path, cell) == {"test": {"accuracy": 0.5}}
