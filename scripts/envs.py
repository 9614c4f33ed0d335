"""Throw-away environments for one transformers release each, sharing .venv's torch.

scripts/compat_matrix.py, scripts/drift.py and scripts/recipes.py measure attnviz and other
code on transformers releases other than the pinned one. Each release gets its own virtual
environment; a .pth file points it at the site-packages of the interpreter running the script
(.venv's), *after* the environment's own, so the environment's transformers and its
dependencies win while torch (a multi-GB download) is shared. .venv itself is never changed.

Packages a recipe needs on top of transformers (llm2vec, gritlm, ...) go into a folder of their
own with ``pip install --no-deps --target``, so one folder serves every release and nothing can
pull in a second torch.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

PIP = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]


def site_packages(env: Path) -> Path:
    """The site-packages folder of the virtual environment ``env``."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))


def environment(version: str, base: Path) -> Path:
    """A virtual environment in ``base`` with ``transformers==version``; returns its python.

    Made once and reused: a second call with the same ``base`` only returns the path.
    """
    env = base / f"transformers-{version}"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        shared = Path(sysconfig.get_paths()["purelib"])  # this interpreter's site-packages: torch lives here
        (site_packages(env) / "zz_shared_torch.pth").write_text(f"{shared}\n", encoding="utf-8")
        subprocess.run([str(python), *PIP, f"transformers=={version}"], check=True)
    return python


def packages(requirements: list[str], base: Path) -> Path:
    """A folder in ``base`` holding exactly ``requirements`` (no dependencies); returns it.

    Put it on ``PYTHONPATH`` to use it from any environment. Only pure-Python packages, or
    packages whose dependencies the environment already has, belong here: nothing else is
    installed, so torch is never downloaded.
    """
    name = "+".join(re.sub(r"[^A-Za-z0-9.=_-]", "_", r) for r in requirements).replace("==", "-")
    folder = base / "packages" / name
    done = folder / ".complete"
    if not done.exists():
        subprocess.run(
            [sys.executable, *PIP, "--no-deps", "--upgrade", "--target", str(folder), *requirements],
            check=True,
        )
        done.write_text("\n".join(requirements) + "\n", encoding="utf-8")
    return folder


def record_measurement(output: Path, script: str, seconds: float, releases: list[str]) -> dict:
    """Note in ``measured.json`` beside ``output`` which script measured it, when, and on what.

    The chapters that show a committed matrix (6 and 10) name its script, date and machine in
    their prose, and check that sentence against this record: re-measuring without updating the
    prose turns the book build red.
    """
    import torch

    record = {
        "script": script,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "releases": releases,
        "seconds": round(seconds),
    }
    path = output.parent / "measured.json"
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    known[output.name] = record
    path.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return record
