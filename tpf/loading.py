"""Finding a pipeline by its reference, ``package.module:attribute``."""

from __future__ import annotations

import importlib

from tpf.errors import ConfigurationError
from tpf.pipeline import Pipeline


def load_pipeline(reference: str) -> Pipeline:
    """``package.module:attribute`` → the Pipeline object it names (attribute default
    ``pipeline``)."""
    module_name, _, attribute = reference.partition(":")
    try:
        pipeline = getattr(importlib.import_module(module_name), attribute or "pipeline")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load pipeline {reference!r}: {exc}") from exc
    if not isinstance(pipeline, Pipeline):
        raise ConfigurationError(f"{reference!r} is a {type(pipeline).__name__}, not a Pipeline")
    return pipeline
