"""The `humanstyle` command line: the daemon, its status, and the one-shot commands."""
