from . import hooks  # noqa: F401
from . import atomic_backend  # noqa: F401
