"""Shared utilities: user-facing errors, environment loading, adapters for other packages' private APIs."""
