import sys

from kreid_edge.cli import main

sys.exit(main())
