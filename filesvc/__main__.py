import sys

from filesvc.cli import main

sys.exit(main())
