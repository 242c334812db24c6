"""Declarative base, engine and sessions, shared by every domain."""
