"""Helpers shared by the test suite (importable by spawned local workers as `tests.support`)."""
