"""rfproxy: the OpenFlow 1.3 face of routeflow, an os-ken application."""
