"""The CLI's malloc setting: accepted by glibc, harmless elsewhere."""

import platform

import numpy as np
import pytest

from invdesign.runtime import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_accepts_the_settings():
    """mallopt returns 0 for a parameter it rejects (e.g. an mmap threshold above its
    maximum), so True means both settings took effect."""
    assert keep_freed_memory() is True
    big = np.ones(2**22)  # 32 MiB blocks still allocate and free normally afterwards
    assert big.sum() == 2**22
