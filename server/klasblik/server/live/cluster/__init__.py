"""Routing between several server instances through Redis."""
