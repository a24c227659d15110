"""The hub: accounts, organisations, access tokens, permissions, search and the web UI."""
