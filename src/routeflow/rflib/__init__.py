"""rflib: what every routeflow daemon shares (protocol, codec, IPC, store, addresses)."""
