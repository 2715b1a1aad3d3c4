"""Where the gateway keeps state: the state store (SQLite, PostgreSQL), local blob files, the manifest cache."""
