import sys

from blockbench.cli import main

sys.exit(main())
