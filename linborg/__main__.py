"""Run the `linborg` command with `python -m linborg`."""

import sys

from linborg.app.cli import main

sys.exit(main())
