import re

import pytest

import attnviz
from attnviz import _versions


def _pins(path):
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_requirements_pin_what_the_package_expects(root):
    pins = _pins(root / "requirements.txt")
    for name, version in attnviz.PINNED_VERSIONS.items():
        assert pins[name] == version, f"requirements.txt pins {name}=={pins.get(name)}"


def test_every_requirement_is_pinned_exactly(root):
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            line = line.split("#")[0].strip()
            assert not line or "==" in line, f"{name}: {line!r} is not pinned with =="


def test_binder_takes_the_cpu_build_of_the_pinned_torch(root):
    text = (root / "binder" / "requirements.txt").read_text(encoding="utf-8")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    assert f"torch=={attnviz.PINNED_VERSIONS['torch']}+cpu" in text
    assert "-r ../requirements.txt" in text


def test_versions_reports_this_environment():
    import torch
    import transformers

    found = attnviz.versions()
    assert found["torch"] == torch.__version__
    assert found["transformers"] == transformers.__version__
    assert found["attnviz"] == attnviz.__version__


def test_versions_warns_when_transformers_is_not_the_pinned_one(monkeypatch):
    real = _versions._installed
    monkeypatch.setattr(_versions, "_installed", lambda n: "4.52.0" if n == "transformers" else real(n))
    with pytest.warns(UserWarning, match=r"transformers 4\.52\.0 is installed.*checked against transformers 5\.24\.0"):
        attnviz.versions()
