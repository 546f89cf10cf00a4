"""`report` and `explain` as commands of the real `clipadapt` CLI."""

from __future__ import annotations

import pytest
from test_report_support import make_run, write_images
from typer.testing import CliRunner

from clipadapt.cli.main import app
RUNNER = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_backbone):
    return make_run(tmp_path_factory.mktemp("cli") / "run", micro_backbone)


def test_report_command_writes_the_page(run, tmp_path):
    result = RUNNER.invoke(app, ["report", str(run), "--out", str(tmp_path / "r.html"), "--gallery", "3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file() and "wrote" in result.output


def test_explain_command_takes_folders_and_per_head_switch(run, tmp_path):
    for extra in write_images(tmp_path / "imgs")[2:]:
        extra.unlink()  # two images are enough and keep the test fast
    result = RUNNER.invoke(app, ["explain", str(tmp_path / "imgs"), "-c", str(run), "-o", str(tmp_path / "out"),
                                 "--no-per-head", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert "img0_weather_mean.png" in names and "img1_panel.png" in names and "img2_panel.png" not in names
    assert not any("_head" in n for n in names)


def test_errors_are_one_line_and_exit_2(tmp_path, micro_backbone):
    zs = make_run(tmp_path / "zs", micro_backbone, method_name="zeroshot", evaluated=False)
    write_images(tmp_path / "imgs")
    result = RUNNER.invoke(app, ["explain", str(tmp_path / "imgs"), "-c", str(zs)])
    assert result.exit_code == 2 and "explain supports mhadapter" in result.output
    result = RUNNER.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a clipadapt run folder" in result.output
