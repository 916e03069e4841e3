"""Hostile inputs built in code, one module per class of attack, each run through the real CLI
under hard limits (tests/hostile/limited.py)."""
