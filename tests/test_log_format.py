"""Every warning that reaches the terminal is one `warning: ...` line: a ClipAdaptWarning,
a library's warnings.warn, clipadapt's log records and a library's (huggingface_hub, with
its own handler, once, not twice), even after something installed logging's default
handler (open_clip's logging.info does). Run in a fresh interpreter, as a command is."""

from __future__ import annotations

import logging
import subprocess
import sys

SCRIPT = """
import logging, warnings
import huggingface_hub.utils.logging  # adds its own plain handler to 'huggingface_hub'
logging.basicConfig()  # what open_clip's first logging.info() does: WARNING:name:message lines
from clipadapt.cli.common import quiet_libraries, run_safely
from clipadapt.errors import ClipAdaptWarning

def go():
    if QUIET:
        quiet_libraries()
    logging.getLogger("clipadapt").warning("skipped 2 unusable images, listed in skipped_images.csv")
    logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    logging.getLogger("open_clip").warning("random weights\\nfor ViT-B-16")
    warnings.warn("zeroshot is no better than chance", ClipAdaptWarning)
    warnings.warn("a library's deprecation", UserWarning)

run_safely(go)
root = logging.getLogger()
print(len(root.handlers), type(root.handlers[0]).__name__, root.level, len(logging.getLogger("huggingface_hub").handlers))
"""


def run(quiet: bool) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, "-c", f"QUIET = {quiet}\n" + SCRIPT], capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines(), done.stdout.strip()


def test_every_warning_is_one_line_in_one_format():
    lines, after = run(quiet=False)
    assert lines == [
        "warning: skipped 2 unusable images, listed in skipped_images.csv",
        "warning: huggingface_hub: Retrying in 1s [Retry 1/5].",
        "warning: open_clip: random weights for ViT-B-16",
        "warning: zeroshot is no better than chance",
        "warning: UserWarning: a library's deprecation",
    ]
    # afterwards the handlers and levels are as they were: basicConfig's on the root, hub's own
    assert after == f"1 StreamHandler {logging.WARNING} 1"


def test_quiet_libraries_drops_library_chatter_but_not_ours():
    lines, _ = run(quiet=True)
    assert "warning: skipped 2 unusable images, listed in skipped_images.csv" in lines
    assert "warning: zeroshot is no better than chance" in lines
    assert not any("open_clip" in line for line in lines)
    assert all(line.startswith("warning: ") for line in lines) and len(lines) == len(set(lines))
