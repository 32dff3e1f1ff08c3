from .bootmae import BootMAE
from .mae_with_momentum_target import MAEWithMomentumTarget

__all__ = ['BootMAE', 'MAEWithMomentumTarget']
