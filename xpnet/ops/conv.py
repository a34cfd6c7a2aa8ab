"""Placeholder: being written (see docs/DEVELOPING.md for ownership)."""
__all__ = []
