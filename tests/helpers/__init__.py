"""What the tests build and run, one module per kind (pytest puts ``tests/``
on ``sys.path``, so a test imports ``from helpers.<module> import ...``):

- ``repo``: the repository root and running its tools (``run_tool`` in a
  subprocess, ``load_tool`` in this process, ``tool_env``, ``free_port``).
- ``image_folder``: ``make_image_folder``, a tiny ImageNet-layout folder of
  random pictures.
- ``classifier``: a tiny mmpretrain ViT classifier config and a complete
  training config around it (``tiny_vit_classifier_cfg``,
  ``tiny_classifier_train_cfg``), ``write_config``.
- ``bootmae``: a tiny BootMAE model config, masks and in-memory masked
  data, and the Runner arguments for a tiny BootMAE run.
- ``demo_pretrain``: the demo pretraining config shrunk to 32 px, run
  through ``tools/train.py`` (killable), and its checkpoints read back.
- ``vit_family``: mmpretrain's ViT-family backbones as BootMAE encoders,
  one row each of the README's mixing table (``ROWS``, ``REFUSED``), the
  ViT-B config with another backbone (``bootmae_cfg``, ``tiny_backbone``).
- ``toy_runner``: a linear-regression model in a real Runner with the
  default runtime's hooks (also a script, to be killed mid-save).
"""
