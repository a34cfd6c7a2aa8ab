"""Placeholder: datasets, samplers and DataLoader are being written (see docs/DEVELOPING.md)."""
__all__ = []
