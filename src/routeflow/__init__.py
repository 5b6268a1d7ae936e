"""routeflow: virtual IP routing services over OpenFlow networks."""

__version__ = "0.1.0"
