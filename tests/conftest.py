"""Shared fixtures; the generators behind them live in ``tests/helpers/``."""
import os
import tempfile

import pytest

# The tests use tiny models: one intra-op thread each is fastest, and keeps
# the subprocess tests (2 training processes on 2 cores) from oversubscribing
# the CPU. Set before torch is imported; child processes inherit it. A
# value given from outside (e.g. OMP_NUM_THREADS=2 to check the tolerances
# under another summation order) is kept.
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
# torch's inductor caches compiled C++ kernels on disk under a key that
# leaves out ATEN_CPU_CAPABILITY: a kernel built for AVX-512 is then reused
# in a run restricted to avx2 (and fails inside the kernel), and one with
# capability 'default' fails to compile against cached headers. A run with
# that variable set gets its own cache.
if os.environ.get('ATEN_CPU_CAPABILITY'):
    os.environ.setdefault('TORCHINDUCTOR_CACHE_DIR', os.path.join(
        tempfile.gettempdir(),
        f'torchinductor_{os.environ["ATEN_CPU_CAPABILITY"]}'))

import torch  # noqa: E402

from helpers.image_folder import make_image_folder  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))


@pytest.fixture
def image_folder(tmp_path):
    """16 random 32x32 PNG images in ImageNet layout (2 classes x 8)."""
    return make_image_folder(tmp_path / 'images')


@pytest.fixture(autouse=True)
def isolated_default_scope():
    """Each test starts with no mmengine default scope and leaves none
    behind: a Runner built with ``default_scope='mmseg'`` in one test must
    not redirect another test's ``MODELS.build`` to mmseg's registry."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
