"""HTTP routers, one module per domain. Thin: declare scopes, parse, call one service."""
