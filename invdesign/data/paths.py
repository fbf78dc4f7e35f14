"""Where the developers' shared datasets live (tests and benchmarks only, never the library)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "INVDESIGN_SHARED_DATA"


def repo_root() -> Path:
    """The folder that holds the `invdesign` package directory."""
    return Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """Folder with the shared development datasets, or None when there is none.

    Looks at the `INVDESIGN_SHARED_DATA` environment variable first, then at
    `<repo root>/../shared/data`.

    Returns:
        The existing folder, or None (an env var naming a missing folder is logged and ignored).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path
        logger.warning("%s=%s is not a folder; ignoring it", ENV_VAR, env)
        return None
    path = repo_root().parent / "shared" / "data"
    return path if path.is_dir() else None


MP_ELASTICITY = "mp_binary_elasticity/mp-binary-pbe-elasticity-dev.json.gz"


def shared_mp_elasticity() -> Path | None:
    """The shared MP binary elasticity file (DFT K, G), or None without the shared folder."""
    root = shared_data_dir()
    return root / MP_ELASTICITY if root else None
