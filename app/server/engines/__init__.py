"""Engines that produce model output for the local server."""
