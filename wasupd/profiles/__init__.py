"""Profiles encrypted at rest: the sealed archive format, keys, and the live-profile lifecycle."""
