import sys

from routeflow.proxy.main import main

sys.exit(main())
