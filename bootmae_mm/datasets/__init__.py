from . import transforms  # noqa: F401
from .bootmae_demo_dataset import BootMAEDemoDataset  # noqa: F401
from .mask_collate import mask_collate  # noqa: F401
from .resumable_sampler import ResumableSampler  # noqa: F401
from .seeded_dataset import SeededDataset  # noqa: F401
