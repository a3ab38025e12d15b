"""A real beets library in a temporary folder, driven through beets' own command line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
Beet = Callable[..., subprocess.CompletedProcess[str]]


def configure(tmp: Path, importing: dict[str, Any], genrepredict: dict[str, Any]) -> Path:
    """(Re)write ``tmp/beetsdir/config.yaml``: library under ``tmp``, as-is copying imports
    that write tags, the plugin enabled with ``genrepredict``'s keys; returns the folder."""
    cfg = tmp / "beetsdir"
    cfg.mkdir(exist_ok=True)

    def block(values: dict[str, Any]) -> str:
        return "".join(f"  {k}: {v}\n" for k, v in values.items())

    base = {"copy": "yes", "write": "yes", "autotag": "no", "quiet": "yes"}
    (cfg / "config.yaml").write_text(
        f"directory: {tmp / 'library'}\nlibrary: {tmp / 'library.db'}\nplugins: genrepredict\n"
        f"import:\n{block({**base, **importing})}genrepredict:\n{block(genrepredict)}")
    return cfg


def runner(cfg: Path, timeout: float = 900) -> Beet:
    """``beet(*args, ok=True)``: beets in a subprocess with this config and our plugin."""
    env = dict(os.environ, BEETSDIR=str(cfg), TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO)]))

    def beet(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "beets", *args], env=env, capture_output=True,
                             text=True, timeout=timeout)
        if ok:
            assert out.returncode == 0, out.stderr
        return out

    return beet
