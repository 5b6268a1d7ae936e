"""Entry point: ``python -m routeflow.client``."""

from routeflow.client.daemon import main

raise SystemExit(main())
