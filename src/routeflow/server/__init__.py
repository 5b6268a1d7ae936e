"""rfserver: the association table and the route -> forwarding translation."""
