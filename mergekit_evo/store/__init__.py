"""The run folder on disk: the record log and run store, the single-writer lock, the safe file readers and writers, and the fingerprints that name a run's settings."""
