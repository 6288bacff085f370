"""Run the `linborg` command with `python -m linborg`."""

import sys

from linborg.cli import main

sys.exit(main())
