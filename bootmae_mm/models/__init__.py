from . import algorithms, backbones, data_preprocessors, heads, necks
from .algorithms import BootMAE, MAEWithMomentumTarget

__all__ = ['BootMAE', 'MAEWithMomentumTarget']
