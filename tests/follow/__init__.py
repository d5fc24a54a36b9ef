"""Harness and scenario tests for ``logpipe``'s follow mode (peers.md section 4)."""
