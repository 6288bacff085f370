"""Shared fixtures. The table builder itself is the plain function ``helpers.make_frame``."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers import make_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    """A small valid long-format metrics table (3 servers x 12 five-minute steps)."""
    return make_frame()


@pytest.fixture
def frame_factory():
    """The ``make_frame(servers=..., steps=..., start=..., seed=...)`` builder, for variants."""
    return make_frame
