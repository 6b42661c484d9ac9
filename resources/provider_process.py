"""The dynamic-provider process ends itself once the engine that started it is gone, hears its Cancel, and
ends quickly.

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

cancel_requested = threading.Event()
"""Set when the engine asks its providers to stop (the Cancel RPC it sends on the user's first Ctrl-C)."""


class Cancelled(Exception):
    """The engine asked the provider to stop while it was waiting."""


def sleep_unless_cancelled(seconds: float) -> None:
    """`time.sleep` for waits the user may interrupt: raises `Cancelled` as soon as the engine asks to stop."""
    if cancel_requested.wait(seconds):
        raise Cancelled()


def listen_for_cancel() -> None:
    """Make the dynamic-provider server's Cancel RPC set `cancel_requested` (in the provider plugin only).

    pulumi.dynamic answers Cancel and does nothing, so a provider waiting for a tuning job kept the engine,
    and the user who pressed Ctrl-C, waiting until its timeout. The gRPC server bound its handler to the
    servicer's `Cancel` before any of our code ran, so the function's code is replaced in place (the bound
    method calls it). The replacement uses only builtins and `empty_pb2`, which the SDK module imports.
    tests/e2e/test_crash_recovery.py fails if a new SDK changes this.
    """
    # `python -m pulumi.dynamic` runs the SDK module as __main__ (engine_address() checked that it is).
    servicer = getattr(sys.modules.get("__main__"), "DynamicResourceProviderServicer", None)
    if servicer is None or servicer.Cancel.__code__ is _engine_cancel.__code__:
        return
    servicer.Cancel.__code__ = _engine_cancel.__code__


def _engine_cancel(self, request, context):  # noqa: ANN001 - the SDK servicer's signature
    __import__("resources.provider_process", fromlist=["cancel_requested"]).cancel_requested.set()
    # empty_pb2: a global of pulumi.dynamic.__main__, whose function runs this code (and keeps its globals).
    return empty_pb2.Empty()  # type: ignore[name-defined]  # noqa: F821 - defined there, not here


def engine_address() -> Optional[str]:
    """The engine address this process serves, when it is the dynamic-provider plugin; else None."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or spec.name != "pulumi.dynamic.__main__":
        return None
    addresses = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    return addresses[0] if addresses else None


def watch_engine_once() -> None:
    """In the provider plugin, start (once) a daemon thread that exits the process when the engine is gone."""
    address = engine_address()
    if address is None or _started.is_set():
        return
    _started.set()
    listen_for_cancel()
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
