from . import (
    algorithms,
    backbones,
    checkpoint_loading,
    data_preprocessors,
    heads,
    necks,
)
