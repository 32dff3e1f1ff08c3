# BootMAE ViT-L/16 pretraining with FSDP (mmengine's FlexibleRunner): the
# online encoder and decoders are sharded over the ranks block by block, so
# each GPU holds 1/N of the weights, gradients and AdamW moments. The recipe
# is configs/bootmae_vit-l_800e.py's; tools/train.py builds a FlexibleRunner
# because `strategy` is set:
#   tools/dist_train.sh configs/bootmae_vit-l_800e_fsdp.py 16
# The momentum target holds buffers, not parameters: FSDP keeps a full copy
# of it on every rank (as DDP does) and MomentumTargetHook updates it from
# the gathered online weights (docs/reliability.md, "Distributed").
_base_ = './bootmae_vit-l_800e.py'

# The foreach AdamW (fused AdamW over FSDP's sharded parameter views is
# untested here). No weight decay on the same tensors as without FSDP, but
# chosen by module and name: with more than one rank FSDP hands the optimizer
# 1-D shards of every parameter, so `flat_decay_mult` (decided by ndim)
# would switch weight decay off for all of them.
optim_wrapper = dict(
    optimizer=dict(fused=False),
    paramwise_cfg=dict(
        _delete_=True,
        bias_decay_mult=0.0,
        norm_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.),
            'q_bias': dict(decay_mult=0.),  # decoders' attention
            'v_bias': dict(decay_mult=0.),
        }))

strategy = dict(
    # mmengine's FSDPStrategy, with each checkpoint renamed into place only
    # once complete (its own save ignores the atomic checkpoint backend)
    type='AtomicFSDPStrategy',
    model_wrapper=dict(
        # one FSDP unit per encoder block (12.6 M parameters in ViT-L) and
        # per decoder block; the rest (patch embedding, tokens, norms,
        # prediction layers) goes to the root unit
        auto_wrap_policy='bootmae_block_wrap_policy',
        # keep the original parameters (names, requires_grad=False on the
        # fixed pos_embed, per-parameter weight decay, the momentum update)
        use_orig_params=True,
        sharding_strategy='FULL_SHARD'),
    # checkpoints: one ordinary file written by rank 0, loadable without
    # FSDP (fine-tuning, converters) and with it (--resume)
    state_dict_cfg=dict(
        state_dict_type='FULL_STATE_DICT',
        state_dict_config=dict(
            type='FullStateDictConfig', offload_to_cpu=True,
            rank0_only=True),
        optim_state_dict_config=dict(
            type='FullOptimStateDictConfig', offload_to_cpu=True,
            rank0_only=True)))
