"""rfweb: REST, live page and metrics (see the rfweb issue)."""
