import sys

from gramlogs.cli import main

sys.exit(main())
