"""Dockyard: a self-hosted container image hub and registry, with a daemonless image builder."""

__version__ = "0.1.0"
