"""Test support: local stand-ins for the services logpipe talks to."""
