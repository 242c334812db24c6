"""HTTP adapters: thin routers that validate input, call services, render results."""
