"""Protocol-level tests: ClientConnection + StandaloneServer on in-memory transports."""
