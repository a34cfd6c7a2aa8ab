"""Placeholder: being written (see docs/DEVELOPING.md for ownership)."""
__all__ = ['Trainer']


class Trainer:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError('Trainer is being written')
