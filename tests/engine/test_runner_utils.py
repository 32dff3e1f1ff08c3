"""What tools/train.py and tools/test.py share (bootmae_mm.engine.run_config,
checkpoint_pointer): `--resume auto` survives a torn `last_checkpoint`
pointer; the default scope follows the registry that knows the config's
model."""
import torch
from mmengine.config import Config

import bootmae_mm  # noqa: F401
from bootmae_mm.engine.checkpoint_pointer import find_resume_checkpoint
from bootmae_mm.engine.run_config import infer_default_scope


def _save(path):
    torch.save(dict(state_dict=dict(w=torch.zeros(2))), path)


def test_pointer_names_the_checkpoint(tmp_path):
    for name in ('iter_2.pth', 'iter_4.pth'):
        _save(tmp_path / name)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_2.pth')


def test_empty_or_stale_pointer_falls_back_to_the_newest_checkpoint(tmp_path):
    for name in ('iter_2.pth', 'iter_10.pth', '.iter_12.pth.abc.tmp',
                 'best.pth'):
        _save(tmp_path / name)
    (tmp_path / 'iter_12.pth').write_bytes(b'x')  # cut short
    (tmp_path / 'last_checkpoint').write_text('')  # killed mid-rewrite
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_10.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'gone.pth'))
    assert find_resume_checkpoint(str(tmp_path)) == str(tmp_path /
                                                        'iter_10.pth')


def test_fresh_work_dir_starts_from_scratch(tmp_path):
    assert find_resume_checkpoint(str(tmp_path)) is None
    assert find_resume_checkpoint(str(tmp_path / 'missing')) is None


def test_default_scope_follows_the_model_registry():
    def scope(**cfg):
        return infer_default_scope(Config(cfg))

    assert scope(model=dict(type='EncoderDecoder')) == 'mmseg'
    assert scope(model=dict(type='BootMAE')) == 'mmpretrain'
    assert scope(model=dict(type='ImageClassifier')) == 'mmpretrain'
    assert scope(model=dict(type='EncoderDecoder'),
                 default_scope='mmpretrain') == 'mmpretrain'
