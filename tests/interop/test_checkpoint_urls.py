"""Every checkpoint argument of ours takes an ``http(s)://`` URL, as
mmengine's do: downloaded once into torch's hub cache, then read with the
safe loader. Served here by a loopback HTTP server (127.0.0.1); no other
network."""
import argparse
import functools
import os
import os.path as osp
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS

import bootmae_mm  # noqa: F401
from bootmae_mm.interop.checkpoint_files import UnsafeCheckpointError
from bootmae_mm.interop.reference_mapping import bootmae_to_reference
from helpers.bootmae import TINY_ARCH, tiny_bootmae_cfg
from helpers.malicious_checkpoint import OpenPayload, save_malicious_checkpoint
from helpers.repo import free_port, load_tool


class _Handler(SimpleHTTPRequestHandler):
    requests = None  # path -> count, set per server

    def do_GET(self):
        self.requests[self.path] = self.requests.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, *args):
        pass


class LoopbackServer:
    """A threaded ``http.server`` serving ``root`` on 127.0.0.1."""

    def __init__(self, root):
        self.requests = {}
        handler = type('Handler', (_Handler, ), dict(requests=self.requests))
        self.httpd = ThreadingHTTPServer(
            ('127.0.0.1', 0),
            functools.partial(handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def url(self, name):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}/{name}'

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def hub_dir(tmp_path):
    """torch's hub cache in a fresh folder."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub'
    torch.hub.set_dir(old)


@pytest.fixture
def served(tmp_path):
    """Our pretraining checkpoint (with its saved config), and reference
    pretraining (with ``args``) and fine-tuning checkpoints."""
    root = tmp_path / 'www'
    root.mkdir()
    torch.manual_seed(0)
    model = MODELS.build(tiny_bootmae_cfg())
    model.init_weights()
    with torch.no_grad():  # make the target differ from the online encoder
        for buf in model.target_encoder.buffers():
            buf.add_(0.1 * torch.randn_like(buf))
    state = model.state_dict()
    cfg = Config(dict(model=tiny_bootmae_cfg(), default_scope='mmpretrain'))
    torch.save({'state_dict': state, 'meta': {'cfg': cfg.pretty_text}},
               str(root / 'ours.pth'))
    ref_model, ref_ema = bootmae_to_reference(state)
    torch.save({'model': ref_model, 'model_ema': ref_ema, 'epoch': 799,
                # the published files keep their arguments under 'args'
                'args': argparse.Namespace(model='bootmae_base')},
               str(root / 'BootMAE_Tiny_PT.pth'))
    finetune = {k: v for k, v in ref_model.items() if k.startswith(
        ('blocks.', 'patch_embed.', 'cls_token', 'pos_embed'))}
    finetune.update({'fc_norm.weight': torch.rand(64),
                     'fc_norm.bias': torch.rand(64),
                     'head.weight': torch.rand(3, 64),
                     'head.bias': torch.rand(3)})
    torch.save({'model': finetune}, str(root / 'BootMAE_Tiny_FT.pth'))
    server = LoopbackServer(root)
    yield server, state, finetune
    server.stop()


def _encoder(url, source='online', **kwargs):
    """A fine-tuning encoder initialized from ``url`` by the config's
    initializer."""
    encoder = MODELS.build(dict(
        type='BootMAEViT', arch=TINY_ARCH, img_size=32, patch_size=8,
        init_cfg=dict(type='BootMAEPretrained', checkpoint=url,
                      source=source), **kwargs))
    encoder.init_weights()
    return encoder.state_dict()


def _segmentation_backbone(url):
    from mmseg.registry import MODELS as SEG_MODELS

    import bootmae_mm.segmentation  # noqa: F401  (BootMAEViTSeg)
    backbone = SEG_MODELS.build(dict(
        type='BootMAEViTSeg', arch=TINY_ARCH, img_size=32, patch_size=8,
        out_indices=(2, ), init_cfg=dict(type='BootMAEPretrained',
                                         checkpoint=url)))
    backbone.init_weights()
    return backbone.state_dict()


def _load_everything(server, state, finetune, tmp_path):
    """Every loader of ours, each given a URL; returns what they read."""
    ours, ref_pt, ref_ft = (server.url(n) for n in (
        'ours.pth', 'BootMAE_Tiny_PT.pth', 'BootMAE_Tiny_FT.pth'))
    got = dict(
        online=_encoder(ours),
        target=_encoder(ours, 'target', final_norm=False),
        ref_online=_encoder(ref_pt),
        ref_target=_encoder(ref_pt, 'target', final_norm=False),
        ref_finetune=_encoder(ref_ft, final_norm=False,
                              out_type='avg_featmap'),
        segmentation=_segmentation_backbone(ours))
    # load_from: mmengine's own loader, through the scheme we register
    whole = MODELS.build(tiny_bootmae_cfg())
    load_checkpoint(whole, ours, map_location='cpu', strict=True)
    got['load_from'] = whole.state_dict()
    # the exporter
    dst = str(tmp_path / 'exported.pth')
    tool = load_tool('tools/model_converters/bootmae_to_vit.py')
    assert tool.main([ours, dst]) == 0
    got['export'] = {
        k[len('backbone.'):]: v for k, v in
        torch.load(dst, weights_only=True)['state_dict'].items()}
    # the reference converter
    config = str(tmp_path / 'tiny.py')
    Config(dict(model=tiny_bootmae_cfg())).dump(config)
    tool = load_tool('tools/model_converters/bootmae_official_to_mm.py')
    assert tool.main([ref_pt, dst, '--config', config]) == 0
    got['converted'] = torch.load(dst, weights_only=True)['state_dict']
    return got


def _check(got, state, finetune):
    for key in ('online', 'target', 'ref_online', 'ref_target'):
        prefix = 'target_encoder.' if 'target' in key else 'backbone.'
        for k, v in got[key].items():
            if k.startswith('ln2.') or (key.startswith('ref') and
                                        k.endswith('qkv.bias')):
                continue  # not in a pretraining / reference checkpoint
            assert torch.equal(v, state[prefix + k]), (key, k)
    assert torch.equal(got['ref_finetune']['ln2.weight'],
                       finetune['fc_norm.weight'])
    assert torch.equal(got['ref_finetune']['layers.1.ffn.layers.1.weight'],
                       finetune['blocks.1.mlp.fc2.weight'])
    assert torch.equal(got['segmentation']['layers.1.attn.q_bias'],
                       state['backbone.layers.1.attn.qkv.bias'][:64])
    for k, v in state.items():
        assert torch.equal(got['load_from'][k], v), k
    for k, v in got['export'].items():
        assert torch.equal(v, state['backbone.' + k]), k
    for k, v in state.items():
        if not k.endswith('qkv.bias'):
            assert torch.equal(got['converted'][k], v), k


def test_checkpoints_load_from_urls_then_from_the_cache(served, hub_dir,
                                                        tmp_path):
    server, state, finetune = served
    _check(_load_everything(server, state, finetune, tmp_path), state,
           finetune)
    # each file was downloaded once, into torch's hub cache
    assert server.requests == {'/ours.pth': 1, '/BootMAE_Tiny_PT.pth': 1,
                               '/BootMAE_Tiny_FT.pth': 1}
    assert sorted(os.listdir(hub_dir / 'checkpoints')) == [
        'BootMAE_Tiny_FT.pth', 'BootMAE_Tiny_PT.pth', 'ours.pth']
    # with the server gone, the same URLs are served from the cache
    server.stop()
    with pytest.raises(OSError):
        torch.hub.download_url_to_file(server.url('ours.pth'),
                                       str(tmp_path / 'x.pth'))
    _check(_load_everything(server, state, finetune, tmp_path), state,
           finetune)


def test_url_checkpoint_is_read_with_the_safe_loader(hub_dir, tmp_path):
    """mmengine's own http loader would unpickle anything; ours refuses
    what is outside the allow-list, and runs nothing of the file."""
    root = tmp_path / 'www'
    root.mkdir()
    marker = tmp_path / 'ran'
    save_malicious_checkpoint(root / 'evil.pth', OpenPayload(marker))
    server = LoopbackServer(root)
    try:
        model = MODELS.build(tiny_bootmae_cfg())
        with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
            load_checkpoint(model, server.url('evil.pth'),
                            map_location='cpu')
        with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
            _encoder(server.url('evil.pth'))
    finally:
        server.stop()
    assert not marker.exists()


def test_unreachable_url_is_named(hub_dir):
    url = f'http://127.0.0.1:{free_port()}/BootMAE_Base_800_PT.pth'
    with pytest.raises(RuntimeError, match='Could not download checkpoint '
                       + url.replace('.', r'\.')):
        _encoder(url)
    assert not osp.exists(hub_dir / 'checkpoints' /
                          'BootMAE_Base_800_PT.pth')


def test_fit_check_reads_urls_and_reference_files(served, hub_dir):
    """The check that refuses a checkpoint of another model before any step
    reads ``load_from`` as mmengine will: an http(s) URL (through the
    cache) and a reference file (converted), not only a local path."""
    from bootmae_mm.engine.checkpoint_fit import (
        CheckpointMismatchError,
        check_checkpoint_fits,
    )
    server, _, _ = served
    model = MODELS.build(tiny_bootmae_cfg())
    for name in ('ours.pth', 'BootMAE_Tiny_PT.pth'):
        check_checkpoint_fits(model, server.url(name), resume=False)
    wider = MODELS.build(tiny_bootmae_cfg(backbone=dict(  # wider MLPs
        type='BootMAEViT', arch=dict(TINY_ARCH, feedforward_channels=256),
        img_size=32, patch_size=8)))
    for name in ('ours.pth', 'BootMAE_Tiny_PT.pth'):
        with pytest.raises(CheckpointMismatchError, match=name):
            check_checkpoint_fits(wider, server.url(name), resume=False)
