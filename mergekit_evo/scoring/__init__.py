"""Scoring a model on a task: the task backends, the item files, the native scorer and the held-back item splits."""
