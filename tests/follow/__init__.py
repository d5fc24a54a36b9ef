"""Harness and scenario tests for ``logpipe``'s follow mode."""
