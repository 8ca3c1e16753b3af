"""Authentication: OAuth 2.0 client credentials, JWT issue and verification, scopes."""
