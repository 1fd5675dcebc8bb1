"""Importing this package registers the project into the host registries."""
