import sys

from lmukws.cli import main

sys.exit(main())
