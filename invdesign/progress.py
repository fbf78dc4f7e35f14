"""Progress callback types shared by the sampling and checking stages."""

from __future__ import annotations

from collections.abc import Callable

StageProgress = Callable[[str, int, int], None]  # (stage, done, total), e.g. ("denoising", 40, 100)
