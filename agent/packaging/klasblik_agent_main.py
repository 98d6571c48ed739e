"""The frozen desktop agent's entry point (PyInstaller): the same ``main`` as ``klasblik-agent``."""

import sys

from klasblik.agent.cli import main

sys.exit(main())
