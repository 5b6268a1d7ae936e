import sys

from routeflow.server.main import main

sys.exit(main())
