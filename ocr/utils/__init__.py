"""Small shared helpers: user-facing errors, environment loading."""
