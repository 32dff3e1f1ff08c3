"""Our model-zoo names in mmpretrain's ``ModelHub``, registered on import
through mmpretrain's own model-index mechanism (``model-index.yml`` at the
repository root, the metafile ``configs/metafile.yml``), so that
``mmpretrain.list_models('*bootmae*')``, ``get_model(name, pretrained=...)``
and the inferencers take them. The segmentation entry is an mmseg config:
``list_models`` shows it; build it with mmseg's ``init_model`` /
``MMSegInferencer`` from its config file."""
import os.path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL_INDEX = osp.join(REPO_ROOT, 'model-index.yml')


def register_models(model_index: str = MODEL_INDEX) -> bool:
    """Register the models of ``model_index`` in mmpretrain's ``ModelHub``
    (config paths relative to the repository root), once.

    Returns:
        bool: whether they are registered (False when the package is
        installed without its configs).
    """
    if not osp.isfile(model_index):
        return False
    from mmpretrain.apis import ModelHub
    from modelindex.load_model_index import load
    index = load(model_index)
    index.build_models_with_collections()
    if not any(ModelHub.has(m.name.lower()) for m in index.models):
        ModelHub.register_model_index(model_index,
                                      config_prefix=osp.dirname(model_index))
    return True
