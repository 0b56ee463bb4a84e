"""Backends: the only place stackbuild talks to a Docker engine.

A backend knows nothing of graphs: it builds one image from a ready request,
says whether an image with a fingerprint exists, tags, pushes and pulls.
"""
