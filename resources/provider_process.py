"""The dynamic-provider process ends itself once the engine that started it is gone, and ends quickly.

The engine starts `python -m pulumi.dynamic ENGINE_ADDRESS` in a process group of its own. When the
engine is killed (SIGKILL, a lost CI runner), nothing tells the provider: a provider waiting for a
tuning job would poll until its timeout and then idle forever. Like Pulumi's Go plugins (and this
project's language host), it checks that its engine still answers and exits when it does not.

At the end of every command the engine stops the provider with SIGINT and waits for it to exit. Python's
orderly shutdown then tears down every module the SDK imported (pulumi, grpc, protobuf): about 40 ms that
each `pulumi preview` and `pulumi up` waited for, with nothing left to clean up. So the provider process
ends with `os._exit` once its output is flushed, unless it is ending with an unhandled exception.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from typing import Optional

ENGINE_CHECK_SECONDS = 5.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_started = threading.Event()
_exits_quickly = threading.Event()


def engine_address() -> Optional[str]:
    """The engine address this process serves, when it is the dynamic-provider plugin; else None."""
    main = sys.modules.get("__main__")
    if getattr(main, "__spec__", None) is None or main.__spec__.name != "pulumi.dynamic.__main__":
        return None
    addresses = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    return addresses[0] if addresses else None


def watch_engine_once() -> None:
    """In the provider plugin, start (once) a daemon thread that exits the process when the engine is gone."""
    address = engine_address()
    if address is None or _started.is_set():
        return
    _started.set()
    threading.Thread(target=_watch, args=(address,), name="engine-watch", daemon=True).start()


def exit_without_teardown_once() -> None:
    """In the provider plugin, make (once) the end of the process skip the interpreter's teardown."""
    if engine_address() is None or _exits_quickly.is_set():
        return
    _exits_quickly.set()
    # atexit runs handlers last-registered first: this one runs before those the SDK and grpc registered at
    # import, which tear down what is about to vanish anyway; logging's own handler is called here instead.
    atexit.register(_exit_now)


def _exit_now() -> None:
    if getattr(sys, "last_value", None) is not None:
        return  # an unhandled exception ends the process: keep Python's exit status and orderly shutdown
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def _watch(address: str) -> None:
    import grpc

    channel = grpc.insecure_channel(address)
    check = channel.unary_unary(HEALTH_CHECK)  # raw bytes: an empty HealthCheckRequest is b""
    while True:
        time.sleep(ENGINE_CHECK_SECONDS)
        try:
            check(b"", timeout=ENGINE_CHECK_SECONDS)
        except grpc.RpcError as error:
            # Any answer, even UNIMPLEMENTED, means the engine is alive (the Go plugins' rule).
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                logging.getLogger(__name__).warning("the engine at %s is gone; the provider exits", address)
                # Nobody is left to receive a result; a job already created is adopted by the next `up`.
                os._exit(0)
