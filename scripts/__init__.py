"""Operator and test scripts; the importable part is ``scripts.ops``."""
