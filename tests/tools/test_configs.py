"""Every config of ours loads and names registered parts with a plain
mmengine set-up (the package installed, the repository not on
``sys.path``), and the always-on hooks are there exactly once, also in a
config that brings its own ``custom_hooks``."""
import glob
import json
import os
import os.path as osp
import sys

from mmengine.config import Config

from helpers.repo import REPO_ROOT, run_tool

DEFAULT_RUNTIME = osp.join(REPO_ROOT, 'configs', '_base_',
                           'default_runtime.py')
ALWAYS_ON = ('NonFiniteLossHook', 'ExactResumeHook')


def our_configs():
    """Every runnable config under configs/ and projects/ (no bases)."""
    found = glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                      recursive=True)
    found += glob.glob(osp.join(REPO_ROOT, 'projects', '*', 'configs',
                                '*.py'))
    return sorted(osp.relpath(f, REPO_ROOT) for f in found
                  if '_base_' not in f.split(os.sep))


# Run in a fresh interpreter from the repository root, as a user's own
# script would: Config.fromfile imports each config's custom_imports, then
# the model and every hook type must resolve in the config's default scope.
_PROBE = '''
import json, sys
from mmengine.config import Config
from mmengine.registry import HOOKS, MODELS

result = {}
for path in sys.argv[1:]:
    try:
        cfg = Config.fromfile(path)
        scope = cfg.get('default_scope', 'mmpretrain')
        with MODELS.switch_scope_and_registry(scope) as models, \
                HOOKS.switch_scope_and_registry(scope) as hooks_registry:
            missing = [t for t in [cfg.model.type] if models.get(t) is None]
            hooks = [h['type'] for h in list(
                cfg.get('default_hooks', {}).values()) +
                list(cfg.get('custom_hooks', [])) if h]
            missing += [t for t in hooks if hooks_registry.get(t) is None]
        result[path] = dict(missing=missing, hooks=hooks)
    except Exception as e:
        result[path] = dict(error=f'{type(e).__name__}: {e}')
print('RESULT' + json.dumps(result))
'''


def test_every_config_loads_without_the_repository_on_sys_path(tmp_path):
    # the package importable, the repository itself not (a plain
    # `python my_script.py` puts only the script's folder on sys.path)
    site = tmp_path / 'site'
    site.mkdir()
    os.symlink(osp.join(REPO_ROOT, 'bootmae_mm'), site / 'bootmae_mm')
    script = tmp_path / 'probe.py'
    script.write_text(_PROBE)
    configs = our_configs()
    env = dict(PYTHONPATH=str(site))
    out = run_tool([sys.executable, str(script), *configs], env=env,
                   timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    result = json.loads(out.stdout.split('RESULT', 1)[1])
    assert sorted(result) == configs
    for path, found in result.items():
        assert 'error' not in found, f'{path}: {found.get("error")}'
        assert found['missing'] == [], f'{path}: unregistered {found}'
        if not path.startswith('configs/segmentation'):  # mmseg's runtime
            for hook in ALWAYS_ON:
                assert found['hooks'].count(hook) == 1, (path, hook, found)


def test_own_custom_hooks_keep_the_always_on_hooks(tmp_path):
    """A config that sets ``custom_hooks`` (a list replaces its base's)
    still runs NonFiniteLossHook and ExactResumeHook, once each."""
    config = tmp_path / 'own_hooks.py'
    config.write_text(f'_base_ = [{DEFAULT_RUNTIME!r}]\n'
                      "custom_hooks = [dict(type='EMAHook')]\n")
    cfg = Config.fromfile(str(config))
    hooks = [h['type'] for h in list(cfg.default_hooks.values()) +
             cfg.custom_hooks if h]
    for hook in ALWAYS_ON:
        assert hooks.count(hook) == 1, hooks
    assert 'EMAHook' in hooks
