"""The peer benchmark: the same pipeline, the same queues, as a Celery chain (``tpf bench peer``).

Only :mod:`tpfctl.bench.peer.compare` is imported by the suite; it imports the Celery side
(:mod:`~tpfctl.bench.peer.chains`, :mod:`~tpfctl.bench.peer.celery_app`) once it has found the
``bench`` extra installed.
"""
