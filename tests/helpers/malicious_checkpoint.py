"""Checkpoints that run code when unpickled: each payload creates a marker
path, so a test sees whether loading ran it."""
import builtins
import os

import torch


class OpenPayload:
    """Unpickling it calls ``builtins.open(marker, 'w')``: creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, 'w'))


class MkdirPayload(OpenPayload):
    """Unpickling it calls ``os.mkdir(marker)``."""

    def __reduce__(self):
        return (os.mkdir, (self.marker, ))


def save_malicious_checkpoint(path, payload):
    """A checkpoint at ``path`` (returned as a str) that looks normal but
    hides ``payload`` in its ``meta``."""
    torch.save(dict(state_dict=dict(weight=torch.ones(2)),
                    meta=dict(note=payload)), str(path))
    return str(path)
