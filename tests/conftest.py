import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def real_data_dir():
    """Folder of the real datasets: $SKSKETCH_DATA_DIR, else ../shared/data."""
    return Path(os.environ.get("SKSKETCH_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture
def data_dir():
    path = real_data_dir()
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set SKSKETCH_DATA_DIR)")
    return path
