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

# the foreach AdamW (fused AdamW over FSDP's sharded parameter views is
# untested here)
optim_wrapper = dict(optimizer=dict(fused=False))

strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        # every module that alone holds >= 1e7 parameters becomes its own
        # FSDP unit: each ViT-L block (12.6 M), the rest goes to the root
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=int(1e7)),
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
