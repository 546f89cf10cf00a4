"""The Python API's surface (issue 28): `clipadapt.__all__` is exactly the documented list,
every public name has a docstring (the callables with an example), `import clipadapt` stays
light, and the API trains, loads and predicts with the dependencies `pip install .`
brings, none of the dev extras."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import clipadapt

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def documented_names() -> list[str]:
    """The names in the table of docs/python.md's "## Every public name" section."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Every public name", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_all_is_exactly_the_documented_list():
    documented = documented_names()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert sorted(documented) == sorted(clipadapt.__all__), (
        f"documented but not exported: {sorted(set(documented) - set(clipadapt.__all__))}; "
        f"exported but not documented: {sorted(set(clipadapt.__all__) - set(documented))}")
    assert "## Stability" in DOCS.read_text(encoding="utf-8")


def test_every_public_name_resolves_and_explains_itself():
    for name in clipadapt.__all__:
        value = getattr(clipadapt, name)
        if name == "__version__":
            assert re.fullmatch(r"\d+\.\d+\.\d+", value)
            continue
        assert inspect.getdoc(value), f"clipadapt.{name} has no docstring"
        if inspect.isfunction(value):
            assert ">>>" in inspect.getdoc(value), f"clipadapt.{name}'s docstring has no example"
    for method in ("predict", "predict_proba", "embed", "export"):
        assert ">>>" in inspect.getdoc(getattr(clipadapt.Run, method)), f"Run.{method} has no example"
    assert (Path(clipadapt.__file__).parent / "py.typed").is_file()


def test_an_unknown_name_is_an_attribute_error():
    try:
        clipadapt.lod  # noqa: B018 - a typo of load
    except AttributeError as exc:
        assert "lod" in str(exc)
    else:
        raise AssertionError("clipadapt.lod should not exist")


DEV_ONLY = ("pytest", "hypothesis", "ray", "playwright", "transformers", "onnx", "onnxruntime", "onnxscript")


def test_the_api_runs_without_the_dev_extras(tmp_path):
    """What a user of `pip install clipadapt` has: train from a dict, load, predict a PIL image
    and a path, with the dev extras' packages blocked and `import clipadapt` free of torch."""
    script = f"""
import sys
for name in {DEV_ONLY!r}:
    sys.modules[name] = None  # as if not installed: import fails, importlib.util.find_spec says None
import clipadapt
assert 'torch' not in sys.modules, 'import clipadapt pulled in torch'
import numpy as np
from pathlib import Path
from PIL import Image
rng = np.random.default_rng(1)
for split, n in (('train', 6), ('test', 2)):
    for name, colour in (('red', (200, 40, 40)), ('blue', (40, 40, 200))):
        folder = Path('pets') / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.clip(np.array(colour) + rng.normal(0, 30, (40, 48, 3)), 0, 255)
                            .astype(np.uint8)).save(folder / f'{{i}}.png')
run = clipadapt.train({{'data': {{'format': 'folder', 'root': 'pets'}}, 'method': 'linear_probe',
                       'train': {{'epochs': 5}}}}, 'runs/pets')
table = run.predict(['pets/test/red/0.png', Image.open('pets/test/blue/0.png')])
print(table['class'].tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['red', 'blue']"  # it learned the two colours
    assert (tmp_path / "runs/pets/checkpoint.safetensors").is_file()


def test_the_docstring_examples_that_need_no_run_folder_run():
    import doctest

    from clipadapt.api import catalogue, run, settings, workflows
    from clipadapt.engine import card

    for module in (catalogue, run, settings, workflows, card, clipadapt):
        result = doctest.testmod(module, extraglobs={"clipadapt": clipadapt}, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{module.__name__}: {result.failed} docstring examples failed"


def test_no_subpackage_shadows_an_api_name():
    """Importing a subpackage sets it as an attribute of the package: a subpackage named like
    an API function (`clipadapt.bench` once was) would replace the function for the rest of
    the process."""
    import pkgutil

    subpackages = {info.name for info in pkgutil.iter_modules(clipadapt.__path__)}
    assert not subpackages & set(clipadapt.__all__), subpackages & set(clipadapt.__all__)
    for name in clipadapt.__all__:
        if name != "__version__":
            assert not inspect.ismodule(getattr(clipadapt, name)), f"clipadapt.{name} is a module"
