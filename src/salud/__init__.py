"""Salud Universal: registry, facilities, credential and shared health record."""

__version__ = "0.1.0"
