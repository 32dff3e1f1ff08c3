"""What the tests build and run, one module per kind (pytest puts ``tests/``
on ``sys.path``, so a test imports ``from helpers.<module> import ...``):

- ``repo``: the repository root and running its tools (``run_tool`` in a
  subprocess, ``load_tool`` in this process, ``tool_env``, ``free_port``).
- ``image_folder``: ``make_image_folder``, a tiny ImageNet-layout folder of
  random pictures; ``make_mixed_picture_folder``, a flat folder of mixed
  formats, sizes and colour modes.
- ``classifier``: a tiny mmpretrain ViT classifier config and a complete
  training config around it (``tiny_vit_classifier_cfg``,
  ``tiny_classifier_train_cfg``), ``write_config``.
- ``bootmae``: a tiny BootMAE model config, masks and in-memory masked
  data, the Runner arguments for a tiny BootMAE run, and a tiny BootMAE
  checkpoint whose online encoder and momentum target differ
  (``save_bootmae_checkpoint``).
- ``demo_pretrain``: the demo pretraining config shrunk to 32 px, run
  through ``tools/train.py`` (killable), and its checkpoints read back.
- ``tiny_pretrain``: the production or custom-folder pretraining config
  shrunk to a tiny BootMAE on 32 px pictures, GPU settings left as they are
  (its tiny model and pipeline text, ``TINY_MODEL_AND_PIPELINE``, is also
  ``demo_pretrain``'s); the production config's path, ``PRETRAIN_CONFIG``.
- ``downstream``: the fine-tuning / linear-probing configs shrunk
  (``tiny_cls_config``) and a tiny ImageNet folder of their 3 classes
  (``make_tiny_imagenet``).
- ``segmentation``: the segmentation config's segmentor shrunk (its
  encoder arch ``ARCH``; the config's path, ``SEG_CONFIG``), a generated
  ADE20K folder, the shrunk training config (``tiny_seg_train_config``).
- ``malicious_checkpoint``: checkpoints that run code when unpickled
  (``OpenPayload``, ``MkdirPayload``, ``save_malicious_checkpoint``).
- ``fake_cuda``: models and batches on a fake ``cuda:0`` (FakeTensorMode),
  CUDA autocast without CUDA, module outputs recorded.
- ``vit_family``: mmpretrain's ViT-family backbones as BootMAE encoders,
  one row each of the README's mixing table (``ROWS``, ``REFUSED``), the
  ViT-B config with another backbone (``bootmae_cfg``, ``tiny_backbone``).
- ``toy_runner``: a linear-regression model in a real Runner with the
  default runtime's hooks (also a script, to be killed mid-save).
- ``reference_bootmae``: an independent re-implementation of the
  reference's pretraining forward and initialization, with its parameter
  names (the converter and the weight init are checked against it).
"""
