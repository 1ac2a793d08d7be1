"""The log handler that writes on a thread of its own: every line, in order, none lost at close."""
import io
import logging
import threading

from meterproject.logs import BackgroundStreamHandler


def test_lines_are_written_in_order_by_another_thread_and_all_of_them_by_close():
    stream = io.StringIO()
    writers = set()
    write = stream.write

    def noted(text):
        writers.add(threading.current_thread().name)
        return write(text)

    stream.write = noted
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("meterproject.tests.background")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(1000):
            logger.warning("line %d", i)
    finally:
        logger.removeHandler(handler)
        handler.close()

    assert stream.getvalue().splitlines() == [f"WARNING line {i}" for i in range(1000)]
    assert threading.current_thread().name not in writers
    handler.close()  # closing twice (as logging's own shutdown may) is harmless
