"""``python -m tpf.bench``: the same command as ``tpf bench``."""

import sys

from tpf.cli import main

sys.argv[1:1] = ["bench"]
main()
