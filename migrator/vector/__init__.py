"""Vector side: the versioned schema, the adapter interface and the adapter registry."""
