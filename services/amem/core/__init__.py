"""Shared library: domain model, errors, settings helpers, logging and the note store."""
