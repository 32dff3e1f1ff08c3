"""BootMAE's momentum (EMA) target encoder, as a mixin so that any
algorithm with an online ``backbone`` can carry one (through
``FeatureBranchMixin``: ``BootMAE``, and the ``MAE`` variant in
projects/bootmae_ablations)."""
import re

import torch
import torch.nn as nn


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a persistent buffer: it stays
    in the state dict (and so in checkpoints), moves with ``.to()``, takes
    no gradient and is never handed to an optimizer."""
    for m in module.modules():
        for name, param in list(m._parameters.items()):
            if param is not None:
                del m._parameters[name]
                m.register_buffer(name, param.detach())
    return module


def _unwrapped_name(name: str) -> str:
    """A parameter name without the wrappers that FSDP (use_orig_params)
    and activation checkpointing put around submodules."""
    return re.sub(r'_(fsdp|checkpoint)_wrapped_module\.', '', name)


class MomentumTargetMixin:
    """A momentum copy of ``self.backbone`` in ``self.target_encoder``.

    The copy's parameters are buffers (checkpointed, never optimized); it
    always runs in eval mode; ``MomentumTargetHook`` calls
    :meth:`update_target` after every optimizer step. Put the mixin before
    the algorithm's base class and call :meth:`build_momentum_target` in
    ``__init__`` (``self.target_encoder = None`` for no target).
    """

    @property
    def with_target(self) -> bool:
        return self.target_encoder is not None

    def build_momentum_target(self, encoder: nn.Module) -> None:
        """Hold ``encoder`` (same parameter names as the backbone) as the
        momentum target, starting as an exact copy of the backbone."""
        self.target_encoder = freeze_as_buffers(encoder)
        self.target_encoder.eval()
        self._target_pairing = None  # built on the first update
        self.copy_online_to_target()

    def _target_pairs(self):
        """Matching (target, online) tensors of the momentum update.

        The pairing (owner module and buffer name, online parameter) is found
        once; the tensors are looked up on each call, since ``.to()`` /
        ``.cuda()`` replaces buffers (parameters keep their identity)."""
        if self._target_pairing is None:
            online = {_unwrapped_name(n): p
                      for n, p in self.backbone.named_parameters()}
            # buffers of the online encoder (e.g. relative position
            # indices) are copied, never averaged
            fixed = {_unwrapped_name(n)
                     for n, _ in self.backbone.named_buffers()}
            pairing, unmatched = [], []
            for prefix, module in self.target_encoder.named_modules():
                for name in module._buffers:
                    key = _unwrapped_name(
                        f'{prefix}.{name}' if prefix else name)
                    param = online.get(key)
                    if param is None:
                        if key not in fixed:
                            unmatched.append(key)
                    elif param.requires_grad:
                        pairing.append((module, name, param))
            if unmatched:
                raise RuntimeError(f'momentum target: no online parameter '
                                   f'for the target tensors {unmatched}')
            self._target_pairing = pairing
        return ([module._buffers[name]
                 for module, name, _ in self._target_pairing],
                [param for _, _, param in self._target_pairing])

    @torch.no_grad()
    def copy_online_to_target(self) -> None:
        """Make the momentum target an exact copy of the online encoder."""
        online = self.backbone.state_dict()
        for name, buf in self.target_encoder.named_buffers():
            if name in online:
                buf.copy_(online[name])

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """``target = decay * target + (1 - decay) * online`` for every
        trained tensor, as one multi-tensor kernel:
        ``lerp(target, online, 1 - decay)``."""
        targets, sources = self._target_pairs()
        torch._foreach_lerp_(targets, sources, 1. - decay)

    def init_weights(self) -> None:
        """The target becomes a copy of the initialized online encoder;
        unless the whole model was loaded from a checkpoint (``init_cfg``
        of type ``Pretrained``), whose momentum target is kept."""
        super().init_weights()
        init_cfg = getattr(self, 'init_cfg', None)
        loaded = isinstance(init_cfg, dict) and \
            init_cfg.get('type') == 'Pretrained'
        if self.with_target and not loaded:
            self.copy_online_to_target()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.with_target:
            self.target_encoder.eval()  # the target always runs in eval mode
        return self
