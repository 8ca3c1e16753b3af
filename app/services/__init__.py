"""Domain services: plain async functions taking the session (and principal) first."""
