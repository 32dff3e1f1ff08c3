"""The method stands alone: ``bootmae_mm.models`` imports nothing of the
other rooms (runtime, GPU feeding, interoperability, segmentation), so that
it reads, and runs, without them (docs/architecture.md)."""
import sys

from helpers.repo import run_tool

OTHER_ROOMS = ('bootmae_mm.engine', 'bootmae_mm.feeding',
               'bootmae_mm.interop', 'bootmae_mm.segmentation')


def test_models_import_no_other_room():
    # bootmae_mm/__init__ imports every room: load the models package
    # under a bare parent package, as a reader of models/ would
    out = run_tool([sys.executable, '-c', (
        'import importlib.util, sys, types\n'
        'spec = importlib.util.find_spec("bootmae_mm")\n'
        'pkg = types.ModuleType("bootmae_mm")\n'
        'pkg.__path__ = list(spec.submodule_search_locations)\n'
        'sys.modules["bootmae_mm"] = pkg\n'
        'import bootmae_mm.models\n'
        'print(sorted(m for m in sys.modules\n'
        f'             if m.startswith({OTHER_ROOMS!r})))')])
    assert out.returncode == 0, out.stdout[-3000:]
    assert out.stdout.strip().splitlines()[-1] == '[]', out.stdout
