"""The benchmarks run on tiny shapes (so they cannot rot) and write their records; the
figures of such a run are noise, so only their presence and sanity are checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
ROW_KEYS = {"a", "a-lossy", "g", "b", "c", "d", "e", "f-promptpar", "f-microclip", "h-siglip", "h-eva"}
# rows i (aggregate, ~5 s quick: ten fresh interpreters) and j (serve under load, ~35 s quick: a
# run folder trained, two servers started) are smoke-run by `run_all.py --quick --rows i,j`, not here;
# their records' conversion into rows is tested below on the committed full-size records
TINY_ROWS = "abcdefh"


@pytest.fixture()
def benchmarks(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.chdir(ROOT)


def test_every_suite_row_runs_on_tiny_shapes(benchmarks, tmp_path):
    import run_all

    assert run_all.main(["--quick", "--rows", TINY_ROWS, "--out-dir", str(tmp_path)]) == 0
    suite = json.loads((tmp_path / "suite.json").read_text())
    rows = {r["key"]: r for r in suite["rows"]}
    assert set(rows) == ROW_KEYS and suite["matmul"]["gflops"] > 0
    for row in rows.values():
        assert row["figure"] is not None and row["figure"] == row["figure"], row  # a number, not NaN
        assert row["met"] in (True, False, None) and row["command"].startswith("python benchmarks/run_all.py")
    # the fast fp32 pass must agree with fp32 eager even on tiny shapes; the lossy ones are only printed
    assert rows["a"]["details"]["cosine_vs_fp32_eager"]["clipadapt"] >= 0.999
    assert rows["a"]["details"]["cosine_vs_fp32_eager"]["clipadapt_tap"] >= 0.999
    assert 0 <= rows["d"]["details"]["draft_vs_full"]["same_class_fraction"] <= 1
    assert all(run["peak_epoch_mib"] > 0 for run in rows["e"]["details"]["runs"])
    assert rows["h-siglip"]["details"]["max_abs_diff"] < 1e-4 and rows["h-eva"]["details"]["max_abs_diff"] < 1e-4
    table = (tmp_path / "suite.md").read_text()
    assert all(f"| {key} |" in table for key in ROW_KEYS)


def test_standalone_scripts_keep_their_command_lines(benchmarks, tmp_path, monkeypatch):
    import feature_store_vs_end_to_end
    import promptpar_step

    store, steps = tmp_path / "store.json", tmp_path / "pp.json"
    monkeypatch.setattr(sys, "argv", ["x", "--images", "4", "--batch-size", "2", "--backbone", "clipadapt-micro",
                                      "--out", str(store)])
    feature_store_vs_end_to_end.main()
    monkeypatch.setattr(sys, "argv", ["x", "--backbone", "clipadapt-micro", "--batch", "2", "--attributes", "3",
                                      "--repeats", "1", "--out", str(steps)])
    promptpar_step.main()
    record = json.loads(store.read_text())
    assert record["store_epoch_s"] > 0 and record["end_to_end_epoch_s"] > 0 and record["images"] == 4
    record = json.loads(steps.read_text())
    assert record["promptpar_step_s"] > 0 and record["frozen_forward_s"] > 0 and record["tokens"] > 16


def test_gpu_benchmark_runs_its_three_steps_on_the_cpu(benchmarks, tmp_path, monkeypatch):
    import gpu_steps

    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["x", "--device", "cpu", "--quick", "--out", str(out)])
    gpu_steps.main()
    record = json.loads(out.read_text())
    assert [r["name"] for r in record["rows"]] == ["mhadapter", "promptpar", "microclip"]
    for row in record["rows"]:
        assert row["step_ms"] > 0 and row["frozen_forward_ms"] > 0 and row["trainable_parameters"] > 0, row
        assert row["peak_mib_step"] is None  # GPU memory is read on CUDA only


def test_a_run_of_some_rows_keeps_the_other_rows_of_the_record(benchmarks, tmp_path):
    """`--rows f` once wiped rows a-e from the committed suite record; now it replaces only
    its own rows, and every row says when it was measured."""
    import run_all

    assert run_all.main(["--quick", "--rows", "e", "--out-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "suite.json").read_text())
    first = {r["key"]: r for r in record["rows"]}
    assert set(first) == {"e"}
    record["rows"][0]["details"]["measured"] = "2000-01-01 00:00"  # as if from an older run
    (tmp_path / "suite.json").write_text(json.dumps(record))

    assert run_all.main(["--quick", "--rows", "f", "--out-dir", str(tmp_path)]) == 0
    rows = {r["key"]: r for r in json.loads((tmp_path / "suite.json").read_text())["rows"]}
    assert list(rows) == ["e", "f-promptpar", "f-microclip"]  # table order, e kept
    assert rows["e"]["figure"] == first["e"]["figure"] and rows["e"]["details"]["measured"] == "2000-01-01 00:00"
    assert rows["f-microclip"]["details"]["measured"] != "2000-01-01 00:00"
    assert "| e |" in (tmp_path / "suite.md").read_text() and "2000-01-01 00:00" in (tmp_path / "suite.md").read_text()

    # a full-size record is never mixed with a quick one
    record = json.loads((tmp_path / "suite.json").read_text())
    (tmp_path / "suite.json").write_text(json.dumps({**record, "quick": False}))
    assert run_all.main(["--quick", "--rows", "e", "--out-dir", str(tmp_path)]) == 0
    assert [r["key"] for r in json.loads((tmp_path / "suite.json").read_text())["rows"]] == ["e"]


def test_rows_i_and_j_come_from_the_standalone_records(benchmarks, tmp_path):
    """--from-records builds rows i (aggregate) and j (serve under load) from the committed
    full-size records of aggregate_scale.py and serve_load.py, each with the record's time."""
    import run_all

    assert run_all.main(["--rows", "i,j", "--from-records", "--out-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "suite.json").read_text())
    rows = {r["key"]: r for r in record["rows"]}
    assert list(rows) == ["i", "i-memory", "j"] and record["quick"] is False
    aggregate = json.loads((ROOT / "benchmarks/results/aggregate_scale.json").read_text())
    serve = json.loads((ROOT / "benchmarks/results/serve_load.json").read_text())
    assert rows["i"]["figure"] == round(aggregate["sizes"][-1]["h3"]["speed_vs_pandas"], 2)
    assert rows["i-memory"]["figure"] == round(max(aggregate["acceptance"]["peak_rss_growth"].values()), 2)
    assert rows["i-memory"]["met"] is aggregate["acceptance"]["met"]
    at_most = max(serve["speedup"], key=lambda s: s["clients"])
    assert rows["j"]["figure"] == at_most["throughput_ratio_new_over_old"] and rows["j"]["details"]["clients"] == 32
    assert "p99" in rows["j"]["note"]
    assert rows["i"]["details"]["measured"] == aggregate["date"] and rows["j"]["details"]["measured"] == serve["when"]
    assert "row_seconds" not in rows["j"]["details"]
    with pytest.raises(SystemExit):  # a row without a standalone record, or a quick run, is refused
        run_all.main(["--rows", "e,i", "--from-records", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        run_all.main(["--quick", "--rows", "i", "--from-records", "--out-dir", str(tmp_path)])
