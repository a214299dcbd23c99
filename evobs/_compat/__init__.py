"""Reads of other libraries' private attributes, one module per library, each with a test."""
