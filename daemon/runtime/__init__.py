"""The process around the work: the supervisor, the stage loop, ZeroMQ sockets and wire format, metrics, logs,
preflight checks."""
