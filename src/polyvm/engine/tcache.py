"""Persistent translation cache (filled in below)."""

from __future__ import annotations


def default_cache():
    return None
