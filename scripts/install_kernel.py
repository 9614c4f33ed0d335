"""Install the `python3` Jupyter kernel of this environment, with the kernel's own log quiet.

ipykernel 7 logs "[IPKernelApp] WARNING | Kernel is running over TCP without encryption" at
every kernel start. Every chapter starts a kernel on this machine's loopback, so the book's
build log would carry one such line per chapter and hide real warnings. This kernelspec is
ipykernel's own, plus `--IPKernelApp.log_level=ERROR`; cell output, Python warnings and
errors are unaffected. `make` runs it when it sets up .venv.
"""

import json
import sys
from pathlib import Path

spec_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3"
spec_dir.mkdir(parents=True, exist_ok=True)
spec = {
    "argv": [
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        "--IPKernelApp.log_level=ERROR",
    ],
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "metadata": {"debugger": True},
}
(spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
print(f"installed kernelspec python3 -> {spec_dir}")
