"""Shared fixtures; the generators behind them live in ``tests/helpers.py``."""
import pytest

from helpers import make_image_folder


@pytest.fixture
def image_folder(tmp_path):
    """16 random 32x32 PNG images in ImageNet layout (2 classes x 8)."""
    return make_image_folder(tmp_path / 'images')
