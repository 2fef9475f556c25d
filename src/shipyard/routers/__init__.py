"""Routers: who gets traffic."""
