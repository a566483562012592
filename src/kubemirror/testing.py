"""Pytest plugin and fixtures for testing against kubemirror's embedded API server.

Loaded automatically by pytest through the ``pytest11`` entry point. The
multicluster server fixtures are defined here once that layer exists.
"""
