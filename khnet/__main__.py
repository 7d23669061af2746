"""``python -m khnet ...`` (and ``torchrun -m khnet train ...``) runs the CLI."""

import sys

from khnet.cli.main import main

sys.exit(main())
