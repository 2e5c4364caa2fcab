"""``python -m crawler``, and the ``allen-mirror`` command's entry point (``run``).

The console script imports only this module before it runs: multiprocessing starts a worker
(``verify``'s hashing pool) by importing the main script again, and a worker must not import the
whole command line each time.
"""

import gc


def run() -> None:
    """Run the command line in this process and exit with its code.

    The garbage collector is off while the command line is imported: the imports make hundreds of
    thousands of objects that live until exit, and collecting during them only walks those again.
    """
    gc.disable()
    from crawler.cli import run as run_command_line

    gc.enable()
    run_command_line()


if __name__ == "__main__":
    run()
