"""Storage errors with messages an operator can act on."""


class StorageError(Exception):
    pass


class CorruptLogError(StorageError):
    """A record before the tail of the log is damaged: refusing to start."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            "transaction log %s is corrupt at offset %d (%s); refusing to start with a "
            "shorter history. Restore the data directory from a backup or another server."
            % (path, offset, reason))
        self.path = path
        self.offset = offset
        self.reason = reason
