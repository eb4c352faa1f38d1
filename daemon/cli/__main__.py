"""`python -m humanstyle.daemon.cli` (how torchrun starts the trainer): the `humanstyle` command."""

import sys

from humanstyle.daemon.cli.main import main

sys.exit(main())
