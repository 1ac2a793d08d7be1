"""A log handler that writes on a thread of its own.

The gRPC server's event loop logs a line for every call it serves (watches end by the thousand at
once); a write to stdout there (a pipe, a container's log) holds the loop for the time of a system
call. This handler formats the record where it is logged and hands the line to a queue; one thread
writes the lines in order, and the lines still queued at exit are written before the process ends.
"""
import atexit
import logging
import logging.handlers
import queue
import sys


class BackgroundStreamHandler(logging.handlers.QueueHandler):
    def __init__(self, stream=None):
        super().__init__(queue.SimpleQueue())
        writer = logging.StreamHandler(stream or sys.stdout)
        writer.setFormatter(logging.Formatter("%(message)s"))  # formatted already, by this handler
        self.listener = logging.handlers.QueueListener(self.queue, writer)
        self.listener.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Write what is queued and end the writing thread (once; at exit, or when closed)."""
        if self.listener._thread is not None:
            self.listener.stop()

    def close(self) -> None:
        self.stop()
        super().close()
