import sys

from openvsm.main import main

sys.exit(main())
