"""The crash harness: proof that nothing is lost or done twice whatever dies when.

Run it with ``scripts/chaos`` (or ``python -m tpfctl.chaos``); ``--help`` lists the sizes.
"""
