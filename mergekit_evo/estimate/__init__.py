"""Cheap fitness: the estimators that score a candidate on a few items, the response records they read, and the audit that checks them against full scores."""
