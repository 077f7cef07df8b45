"""Shipped default models (resources of the installed package)."""
