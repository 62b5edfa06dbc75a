"""Helpers the tests share (import as ``helpers.<module>``; tests/ is on sys.path)."""
