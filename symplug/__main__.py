"""``python -m symplug``: the command line (e.g. under ``torchrun ... -m symplug finetune``)."""

import sys

from .cli import main

sys.exit(main())
