"""Contract tests: one suite of IStorageBackend tests run against every storage backend."""
