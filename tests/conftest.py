"""Shared fixtures. Unit tests never need ../shared/data; tests that compare with it skip when it is absent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

SHARED_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nb201" / "nb201.csv"


@pytest.fixture(scope="session")
def nb201_rows() -> list[dict[str, str]]:
    """The benchmark table in ../shared/data (skips when it is not there)."""
    if not SHARED_CSV.is_file():
        pytest.skip(f"{SHARED_CSV} not found: the full-table comparison needs ../shared/data beside the checkout")
    with SHARED_CSV.open(newline="") as f:
        return list(csv.DictReader(f))
