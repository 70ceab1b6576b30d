"""Test utilities that start real components locally (never anything off 127.0.0.1)."""
