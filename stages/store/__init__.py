"""Where the pipeline keeps things: the catalog (SQLite or PostgreSQL), its segments and leases, object storage,
folder locks."""
