"""``python -m logpipe``."""

import sys

from logpipe.cli.main import main

sys.exit(main())
