"""Leaves: settings, errors, ids, API keys and metrics; no framework, no driver."""
