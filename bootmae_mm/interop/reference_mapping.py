"""Parameter names of the reference BootMAE implementation <-> ours.

Pure functions on state dicts (no file I/O), used by
``tools/model_converters/bootmae_official_to_mm.py`` and by checkpoint
loaders. Reference checkpoints keep the weights under ``model`` (and, for
pretraining, the EMA copy of the whole model under ``model_ema``);
docs/method.md section 9.

Pretraining (``reference_to_bootmae``)::

    patch_embed.proj        -> backbone.patch_embed.projection
    cls_token, pos_embed    -> backbone.cls_token, backbone.pos_embed
    blocks.i.norm1 / norm2  -> backbone.layers.i.ln1 / ln2
    blocks.i.attn.qkv.weight-> backbone.layers.i.attn.qkv.weight
    blocks.i.attn.q_bias + v_bias -> attn.qkv.bias = cat(q, 0, v)
    blocks.i.attn.proj      -> backbone.layers.i.attn.proj
    blocks.i.mlp.fc1 / fc2  -> backbone.layers.i.ffn.layers.0.0 / layers.1
    norm                    -> backbone.ln1
    decode_blocks.i.*       -> pixel_decoder.decoder_blocks.i.* (c_attn ->
                               cross_attn, names otherwise the same)
    down, mask_token, decode_norm, lm_head.proj
                            -> pixel_decoder.decoder_embed, mask_token,
                               decoder_norm, decoder_pred
    decode_blocks_1, down_1, mask_token_1, decode_norm_1, lm_head_1
                            -> the same under feature_decoder
    de_pos_embed            -> checked equal to our fixed sin-cos buffer
                               ``pixel_decoder.decoder_pos_embed``

The EMA encoder (``model_ema``: cls_token, pos_embed, patch_embed, blocks)
becomes ``target_encoder.*``; without it the target is a copy of the online
encoder, which is how training starts.
"""
import re
from typing import Dict, Iterable, Optional, Tuple

import torch

from ..models.utils import sincos_pos_embed

__all__ = [
    'ReferenceMappingError', 'reference_to_bootmae', 'bootmae_to_reference',
    'reference_finetune_to_vit'
]


class ReferenceMappingError(ValueError):
    """A state dict does not have the names/shapes of the expected model."""


# reference encoder names -> ours (relative to the encoder prefix)
_ENCODER_TOP = {
    'cls_token': 'cls_token',
    'pos_embed': 'pos_embed',
    'patch_embed.proj.weight': 'patch_embed.projection.weight',
    'patch_embed.proj.bias': 'patch_embed.projection.bias',
}
_ENCODER_BLOCK = {
    'norm1.weight': 'ln1.weight',
    'norm1.bias': 'ln1.bias',
    'attn.qkv.weight': 'attn.qkv.weight',
    'attn.proj.weight': 'attn.proj.weight',
    'attn.proj.bias': 'attn.proj.bias',
    'norm2.weight': 'ln2.weight',
    'norm2.bias': 'ln2.bias',
    'mlp.fc1.weight': 'ffn.layers.0.0.weight',
    'mlp.fc1.bias': 'ffn.layers.0.0.bias',
    'mlp.fc2.weight': 'ffn.layers.1.weight',
    'mlp.fc2.bias': 'ffn.layers.1.bias',
}
_QV_BIAS = ('attn.q_bias', 'attn.v_bias')  # -> attn.qkv.bias
_DECODER_BLOCK = [
    f'{m}.{p}' for m in ('norm1', 'norm2', 'norm3', 'norm4')
    for p in ('weight', 'bias')
] + [
    'attn.q_bias', 'attn.v_bias', 'attn.qkv.weight', 'attn.proj.weight',
    'attn.proj.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight',
    'mlp.fc2.bias', 'c_attn.q_bias', 'c_attn.v_bias', 'c_attn.q.weight',
    'c_attn.kv.weight', 'c_attn.proj.weight', 'c_attn.proj.bias'
]
# reference decoder names (suffix '' pixel, '_1' feature) -> ours
_DECODER_TOP = {
    'down{}.weight': 'decoder_embed.weight',
    'down{}.bias': 'decoder_embed.bias',
    'mask_token{}': 'mask_token',
    'decode_norm{}.weight': 'decoder_norm.weight',
    'decode_norm{}.bias': 'decoder_norm.bias',
}
_DECODERS = (('', 'pixel_decoder', 'lm_head.proj'),
             ('_1', 'feature_decoder', 'lm_head_1'))
_PRETRAIN_EXTRA = {'norm.weight': 'backbone.ln1.weight',
                   'norm.bias': 'backbone.ln1.bias'}
_FINETUNE_EXTRA = {'fc_norm.weight': 'backbone.ln2.weight',
                   'fc_norm.bias': 'backbone.ln2.bias',
                   'head.weight': 'head.fc.weight',
                   'head.bias': 'head.fc.bias'}
_FINETUNE_OPTIONAL = {'norm.weight': 'backbone.ln1.weight',
                      'norm.bias': 'backbone.ln1.bias'}


def _pretrain_name_table(state_dict: dict) -> Dict[str, str]:
    """Every reference pretraining name that ``state_dict``'s structure calls
    for (block counts read off the keys) -> our name. ``q_bias``/``v_bias``
    of encoder blocks map to ``...attn.qkv.bias``; ``de_pos_embed`` to
    None (checked, not stored)."""
    table = {k: f'backbone.{v}' for k, v in _ENCODER_TOP.items()}
    table.update(_PRETRAIN_EXTRA)
    table.update(_encoder_block_table(state_dict, 'backbone'))
    table['de_pos_embed'] = None
    for suffix, ours, pred in _DECODERS:
        for ref, name in _DECODER_TOP.items():
            table[ref.format(suffix)] = f'{ours}.{name}'
        for p in ('weight', 'bias'):
            table[f'{pred}.{p}'] = f'{ours}.decoder_pred.{p}'
        for i in _block_indices(state_dict, f'decode_blocks{suffix}'):
            for s in _DECODER_BLOCK:
                table[f'decode_blocks{suffix}.{i}.{s}'] = \
                    f'{ours}.decoder_blocks.{i}.' + \
                    s.replace('c_attn.', 'cross_attn.')
    return table


def _encoder_block_table(state_dict: dict, prefix: str) -> Dict[str, str]:
    table = {}
    for i in _block_indices(state_dict, 'blocks'):
        for ref, ours in _ENCODER_BLOCK.items():
            table[f'blocks.{i}.{ref}'] = f'{prefix}.layers.{i}.{ours}'
        for ref in _QV_BIAS:
            table[f'blocks.{i}.{ref}'] = f'{prefix}.layers.{i}.attn.qkv.bias'
    return table


def _block_indices(state_dict: dict, name: str) -> range:
    """0 .. highest ``name.<i>.`` index found (gaps show up as missing)."""
    pattern = re.compile(rf'^{re.escape(name)}\.(\d+)\.')
    found = [int(m.group(1)) for m in map(pattern.match, state_dict) if m]
    return range(max(found) + 1 if found else 0)


def _check_names(state_dict: dict, table: Dict[str, str], what: str,
                 optional: Iterable[str] = ()) -> None:
    unknown = sorted(set(state_dict) - set(table))
    missing = sorted(set(table) - set(state_dict) - set(optional))
    if unknown or missing:
        lines = [f'{what} does not match the reference model:']
        if unknown:
            lines.append(f'  unknown keys ({len(unknown)}): {unknown}')
        if missing:
            lines.append(f'  missing keys ({len(missing)}): {missing}')
        raise ReferenceMappingError('\n'.join(lines))


def _apply(state_dict: dict, table: Dict[str, str]) -> Dict[str, torch.Tensor]:
    """Rename by ``table``; merges encoder q/v biases into a qkv bias."""
    out = {}
    for ref, value in state_dict.items():
        ours = table.get(ref)
        if ours is None:
            continue
        if ref.endswith(_QV_BIAS[1]) and ref.startswith('blocks.'):
            continue  # handled together with q_bias
        if ref.endswith(_QV_BIAS[0]) and ref.startswith('blocks.'):
            v_bias = state_dict[ref[:-len('q_bias')] + 'v_bias']
            value = torch.cat((value, torch.zeros_like(value), v_bias))
        out[ours] = value
    return out


def _check_sincos(name: str, value: torch.Tensor, atol: float = 1e-5,
                  context: str = 'the state dict') -> None:
    """Our position embeddings are fixed sin-cos; refuse anything else so
    that no learned weight is silently replaced."""
    if value.dim() != 3 or value.shape[0] != 1:
        raise ReferenceMappingError(
            f'{context}: {name} has shape {tuple(value.shape)}, expected '
            '(1, 1 + num_patches, dims).')
    side = int(round((value.shape[1] - 1)**0.5))
    if side * side != value.shape[1] - 1:
        raise ReferenceMappingError(
            f'{context}: {name} holds {value.shape[1] - 1} patches, not a '
            'square grid.')
    expected = sincos_pos_embed(side, value.shape[2])
    err = (value.float().cpu() - expected).abs().max().item()
    if err > atol:
        raise ReferenceMappingError(
            f'{context}: {name} is not the fixed 2-D sin-cos position '
            f'embedding our model uses (max abs difference {err:.3g}); '
            'this checkpoint can not be represented without loss.')


def reference_to_bootmae(state_dict: dict,
                         ema_state_dict: Optional[dict] = None
                         ) -> Dict[str, torch.Tensor]:
    """Reference pretraining weights -> a ``BootMAE`` state dict.

    Args:
        state_dict (dict): the reference checkpoint's ``model`` entry.
        ema_state_dict (dict, optional): its ``model_ema`` entry. Only the
            EMA encoder (cls_token, pos_embed, patch_embed, blocks) is used,
            as in the reference (the target is ``ema.get_feature``); its
            other keys must be valid reference names and are not needed.
            None: the target encoder is a copy of the online encoder.

    Returns:
        dict: ``backbone.*``, ``pixel_decoder.*``, ``feature_decoder.*`` and
        ``target_encoder.*`` tensors, loadable strictly into ``BootMAE``.

    Raises:
        ReferenceMappingError: names every unknown and every missing key, or
            a position embedding that is not the fixed sin-cos one.
    """
    table = _pretrain_name_table(state_dict)
    _check_names(state_dict, table, "the checkpoint's 'model'")
    _check_sincos('de_pos_embed', state_dict['de_pos_embed'],
                  context="the checkpoint's 'model'")
    # the feature decoder's mask tokens use the encoder's (fixed) embedding
    _check_sincos('pos_embed', state_dict['pos_embed'],
                  context="the checkpoint's 'model'")
    out = _apply(state_dict, table)

    source = state_dict
    if ema_state_dict is not None:
        what = "the checkpoint's 'model_ema'"
        unknown = sorted(set(ema_state_dict) - set(table))
        if unknown:
            raise ReferenceMappingError(
                f'{what} does not match the reference model:\n'
                f'  unknown keys ({len(unknown)}): {unknown}')
        source = ema_state_dict
    target_table = {k: f'target_encoder.{v}' for k, v in _ENCODER_TOP.items()}
    target_table.update(_encoder_block_table(state_dict, 'target_encoder'))
    if source is not state_dict:  # the EMA encoder must be complete
        _check_names({k: v for k, v in source.items() if k in target_table},
                     target_table, "the checkpoint's 'model_ema' encoder")
    out.update(_apply({k: source[k] for k in target_table}, target_table))
    return out


def bootmae_to_reference(state_dict: dict
                         ) -> Tuple[Dict[str, torch.Tensor],
                                    Optional[Dict[str, torch.Tensor]]]:
    """A ``BootMAE`` state dict -> reference ``(model, model_ema)`` dicts.

    The k part of each encoder qkv bias is dropped: the reference has no k
    bias, and a k bias never changes attention (it adds the same value to
    every logit of a query). ``model_ema`` holds the target encoder plus
    the online model's other weights (the reference EMA copies the whole
    model but only uses its encoder); None when there is no target.

    Raises:
        ReferenceMappingError: names every key that has no reference name.
    """
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    ref_like = {}
    for k in backbone:  # fake reference keys, to size the name table
        m = re.match(r'^layers\.(\d+)\.', k)
        if m:
            ref_like[f'blocks.{m.group(1)}.x'] = None
    for suffix, ours, _ in _DECODERS:
        for k in state_dict:
            m = re.match(rf'^{ours}\.decoder_blocks\.(\d+)\.', k)
            if m:
                ref_like[f'decode_blocks{suffix}.{m.group(1)}.x'] = None
    table = _pretrain_name_table(ref_like)
    inverse = {}
    for ref, ours in table.items():
        merged = ref.startswith('blocks.') and ref.endswith(_QV_BIAS)
        if ours is not None and not merged:
            inverse[ours] = ref
    qkv_bias = {ours: ref[:-len('q_bias')] for ref, ours in table.items()
                if ref.endswith(_QV_BIAS[0]) and ref.startswith('blocks.')}

    model, target, unknown = {}, {}, []
    for k, v in state_dict.items():
        dest, name = model, k
        if k.startswith('target_encoder.'):
            dest, name = target, 'backbone.' + k[len('target_encoder.'):]
        if name in qkv_bias:
            q, _, v_ = v.chunk(3)
            dest[qkv_bias[name] + 'q_bias'] = q
            dest[qkv_bias[name] + 'v_bias'] = v_
        elif name in inverse:
            dest[inverse[name]] = v
        else:
            unknown.append(k)
    if unknown:
        raise ReferenceMappingError(
            f'{len(unknown)} keys have no reference name: {sorted(unknown)}')
    if 'pixel_decoder.mask_token' in state_dict and 'pos_embed' in model:
        side = int(round((model['pos_embed'].shape[1] - 1)**0.5))
        model['de_pos_embed'] = sincos_pos_embed(
            side, state_dict['pixel_decoder.mask_token'].shape[-1])
    _check_names(model, table, 'the converted model')
    if not target:
        return model, None
    return model, {**model, **target}


def reference_finetune_to_vit(state_dict: dict) -> Dict[str, torch.Tensor]:
    """Reference fine-tuning weights -> an mmpretrain ``ImageClassifier``
    with a ``VisionTransformer``/``BootMAEViT`` backbone
    (``out_type='avg_featmap'``, ``final_norm=False``) and a
    ``LinearClsHead``: ``fc_norm`` -> ``backbone.ln2`` (mmpretrain's norm of
    the averaged patch tokens), ``head`` -> ``head.fc``. A ``norm`` (final
    norm, only in models without mean pooling) maps to ``backbone.ln1``.

    Raises:
        ReferenceMappingError: names every unknown and every missing key.
    """
    table = {k: f'backbone.{v}' for k, v in _ENCODER_TOP.items()}
    table.update(_encoder_block_table(state_dict, 'backbone'))
    table.update(_FINETUNE_EXTRA)
    table.update(_FINETUNE_OPTIONAL)
    _check_names(state_dict, table, "the fine-tuning checkpoint's 'model'",
                 optional=_FINETUNE_OPTIONAL)
    return _apply(state_dict, table)
