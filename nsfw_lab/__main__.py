"""``python -m nsfw_lab`` = ``nsfw-lab``."""

import sys

from nsfw_lab.cli import main

sys.exit(main())
