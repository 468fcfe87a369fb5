"""Batch scoring: a model compiled into a relational plan, run where the data lives."""
