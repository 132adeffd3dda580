"""Fetch stage: every blob a spec pins, verified by sha256, from the content-addressed cache or its origins.

``cache`` (blobs by sha256, locked, hashed on every use), ``download`` (HTTP with retries and resume),
``archive`` (members of .deb/.tar/.zip, bounded), ``fetcher`` (origins tried in order, several blobs at once).
Imports ``spec`` and the shared modules; docs/fetch.md is the user's view.
"""
