"""Helpers shared by tests/, bench/ and scripts/ (each module self-contained)."""
