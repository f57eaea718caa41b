"""The only code that does I/O (sockets, files, processes); no Qt."""
