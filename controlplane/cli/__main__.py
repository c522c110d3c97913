import sys

from controlplane.cli.main import main

sys.exit(main())
