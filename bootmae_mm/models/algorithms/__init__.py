from .bootmae import BootMAE

__all__ = ['BootMAE']
