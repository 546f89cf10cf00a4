"""A command answers bad input, and `predict --model` runs, without importing torch or
open_clip (seconds of start-up): each case runs in a fresh interpreter and reads its
sys.modules. No timings: what is imported is what costs the time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "open_clip", "sklearn", "matplotlib", "clipadapt.workflow.adapt", "clipadapt.workflow.train")

PROBE = """
import json, sys
heavy = json.loads(sys.argv[2])
sys.argv = ["clipadapt", *json.loads(sys.argv[1])]
from clipadapt.cli.main import app
try:
    app()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def run_cli(args: list[str]) -> tuple[dict, str]:
    """Run `clipadapt *args` in a fresh interpreter: (exit code and heavy modules imported, stderr)."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_importing_the_cli_imports_no_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, clipadapt.cli.main, clipadapt.workflow; "
                           f"print([m for m in {HEAVY!r} if m in sys.modules])"],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.mark.parametrize("model_option", [["--model", "/missing.onnx"], ["-c", "{tmp}"]])
def test_predict_answers_a_missing_image_before_importing_torch(tmp_path, model_option):
    result, stderr = run_cli(["predict", str(tmp_path / "missing.jpg"), *(o.format(tmp=tmp_path) for o in model_option)])
    assert result == {"code": 2, "heavy": []}, stderr
    assert f"{tmp_path / 'missing.jpg'} does not exist" in stderr


def test_onnx_predict_with_a_missing_model_imports_no_torch(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    result, stderr = run_cli(["predict", str(tmp_path / "a.jpg"), "--model", str(tmp_path / "missing.onnx"),
                              "-o", str(tmp_path / "p.csv")])
    assert result == {"code": 2, "heavy": []}, stderr
    assert "missing.onnx" in stderr


def test_explain_answers_a_missing_image_before_importing_torch(tmp_path):
    result, stderr = run_cli(["explain", str(tmp_path / "missing.jpg"), "-c", str(tmp_path)])
    assert result == {"code": 2, "heavy": []}, stderr
    assert "does not exist" in stderr


@pytest.mark.parametrize("args", [
    ["train", "{tmp}/missing.yaml", "-o", "{tmp}/run"], ["extract", "{tmp}/missing.yaml"],
    ["adapt", "{tmp}/missing.yaml", "-o", "{tmp}/run"], ["bench", "{tmp}/missing.yaml", "-o", "{tmp}/bench"],
    ["eval", "{tmp}/missing-run"], ["export", "{tmp}/missing-run"], ["report", "{tmp}/missing-run"],
    ["serve", "-c", "{tmp}/missing-run"], ["import-promptpar", "{tmp}/missing.pth", "--dataset", "pa100k", "-o", "{tmp}/r"],
    ["import-mhadapter", "{tmp}/missing.pth", "--attribute", "weather", "-o", "{tmp}/r"],
], ids=lambda args: args[0])
def test_every_command_answers_a_missing_path_before_importing_torch(tmp_path, args):
    result, stderr = run_cli([a.format(tmp=tmp_path) for a in args])
    assert result == {"code": 2, "heavy": []}, stderr
    assert "missing" in stderr and ("does not exist" in stderr or "not found" in stderr), stderr


def test_the_workflow_names_still_import():
    import clipadapt.workflow as workflow

    assert {"train_run", "predict_run", "RunFolder", "adapt_run"} <= set(dir(workflow))
    from clipadapt.workflow import PredictOptions, predict_run

    assert PredictOptions().batch_size == 64 and callable(predict_run)
    with pytest.raises(AttributeError):
        workflow.no_such_name  # noqa: B018
