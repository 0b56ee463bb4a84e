"""Orchestration: carrying out a plan on backends.

``build`` runs a plan through the scheduler (requests, pins, records, results),
``pool`` spreads it over several engines, ``registry`` pulls, pushes and retries,
``upstream`` resolves and refreshes stack.lock, ``archive`` saves and loads. Talks to
engines only through ``backends.contract.Backend``: which implementation is the CLI's
choice.
"""
