"""`python -m longtail_testservers start|stop|status --dir DIR`."""
import sys

from longtail_testservers.cli import main

sys.exit(main())
