import sys

from amem.cli import main

sys.exit(main())
