"""Throw-away environments with one transformers release, sharing this project's torch.

Used by compat_matrix.py and drift.py. A .pth file points each environment at .venv's
site-packages, after the environment's own, so the environment's transformers and its
dependencies win while torch (a multi-GB download otherwise) is shared.
"""

import subprocess
import sys
import sysconfig
from pathlib import Path


def site_packages(env: Path) -> Path:
    """The site-packages folder of the virtual environment ``env``."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))


def environment(version: str, base: Path) -> Path:
    """The python of an environment under ``base`` with ``transformers==version``; made on first use."""
    env = base / f"transformers-{version}"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        shared = Path(sysconfig.get_paths()["purelib"])  # this interpreter's site-packages: torch lives here
        (site_packages(env) / "zz_shared_torch.pth").write_text(f"{shared}\n", encoding="utf-8")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"transformers=={version}"],
            check=True,
        )
    return python
