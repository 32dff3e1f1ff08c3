from . import algorithms, backbones, heads, necks  # noqa: F401
from . import data_preprocessors  # noqa: F401
from . import checkpoint_loading  # noqa: F401
