"""Operator scripts: read-only looks at a stack's status tables and dead-letter envelopes.

Each script is a thin executable in ``scripts/`` over one module here. They find the stack as
every ``tpf`` command does (``TPF_STACK``, the standard ``AWS_*`` variables, or the state file
of ``tpf up``) and then make plain boto3 calls an operator can read and repeat by hand.
"""
