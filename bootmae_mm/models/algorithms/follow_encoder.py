"""Decoder and head configs completed from the built encoder: the width,
head count and patch grid of BootMAE's decoders default to the encoder's
(docs/method.md section 4); an explicit value still wins where it can
work, and one that cannot is refused naming its config key."""
import copy
import inspect
from typing import Optional

from mmpretrain.registry import MODELS


def _class_default(cfg: dict, name: str):
    cls = cfg['type']
    cls = MODELS.get(cls) if isinstance(cls, str) else cls
    if cls is None:
        return None
    for klass in cls.__mro__:  # the first signature that names it
        params = inspect.signature(klass.__init__).parameters
        if name in params:
            return params[name].default
    return None


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _must_equal(cfg: dict, key: str, name: str, value, what: str,
                convert=lambda v: v) -> None:
    """Set ``cfg[name]`` to ``value``, or refuse an explicit other one."""
    given = cfg.get(name)
    if given is None:
        cfg[name] = value
    elif convert(given) != convert(value):
        raise ValueError(
            f'{key}.{name}={given!r} does not fit the encoder ({what} '
            f'{value!r}, model.backbone); leave it out to follow the '
            f'encoder.')


def _check_heads(cfg: dict, key: str) -> None:
    width = cfg.get('embed_dims') or _class_default(cfg, 'embed_dims') \
        or cfg['in_dims']
    heads = cfg['num_heads']
    if not isinstance(heads, int) or not 1 <= heads <= width:
        raise ValueError(
            f'{key}.num_heads={heads!r} cannot split the decoder width '
            f'{width} ({key}.embed_dims) into heads.')


def decoder_cfg(cfg: dict, encoder, key: str, feature: bool) -> dict:
    """A copy of a ``TargetAwareDecoder`` config with ``in_dims``,
    ``context_dims``, ``num_heads``, ``patch_resolution`` (and
    ``patch_size`` of the pixel decoder, ``embed_dims`` / ``out_dims`` of
    the feature decoder, whose target is the encoder's features) taken from
    ``encoder`` where not given.

    Args:
        cfg (dict): the decoder config.
        encoder: the built encoder (BootMAE encoder contract).
        key (str): the config key of ``cfg``, named in errors.
        feature (bool): the feature decoder (else the pixel decoder).
    """
    cfg = copy.deepcopy(cfg)
    width = encoder.embed_dims
    _must_equal(cfg, key, 'in_dims', width, 'its width is')
    _must_equal(cfg, key, 'context_dims', width, 'its taps are')
    _must_equal(cfg, key, 'patch_resolution',
                tuple(encoder.patch_resolution), 'its patch grid is', _pair)
    if feature:
        cfg.setdefault('embed_dims', width)
        _must_equal(cfg, key, 'out_dims', width,
                    'the target features are')
    else:
        _must_equal(cfg, key, 'patch_size', encoder.patch_size,
                    'its patch size is')
    cfg.setdefault('num_heads', encoder.num_heads)
    _check_heads(cfg, key)
    return cfg


def pixel_head_cfg(cfg: dict, encoder, key: str) -> dict:
    """A copy of the pixel head config with the encoder's ``patch_size``
    where not given; another one is refused."""
    cfg = copy.deepcopy(cfg)
    _must_equal(cfg, key, 'patch_size', encoder.patch_size,
                'its patch size is')
    return cfg


def follow_encoder(encoder, pixel_decoder: dict, pixel_head: dict,
                   feature_decoder: Optional[dict] = None) -> tuple:
    """The three configs of :func:`decoder_cfg` / :func:`pixel_head_cfg`
    under BootMAE's config keys (``feature_decoder`` may be None)."""
    return (decoder_cfg(pixel_decoder, encoder, 'model.pixel_decoder',
                        feature=False),
            pixel_head_cfg(pixel_head, encoder, 'model.pixel_head'),
            None if feature_decoder is None else decoder_cfg(
                feature_decoder, encoder, 'model.feature_decoder',
                feature=True))
