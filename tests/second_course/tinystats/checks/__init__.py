"""Trusted re-checks of the tiny course (one module per assignment)."""
