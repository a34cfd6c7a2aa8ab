"""Placeholder: recurrent cells and layers are being written (see docs/DEVELOPING.md)."""
__all__ = []
