"""Evolutionary architecture search over mutable torch models."""
