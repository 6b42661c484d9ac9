"""The dynamic-provider process ends itself once the engine that started it is gone.

The engine starts `python -m pulumi.dynamic ENGINE_ADDRESS` in a process group of its own. When the
engine is killed (SIGKILL, a lost CI runner), nothing tells the provider: a provider waiting for a
tuning job would poll until its timeout and then idle forever. Like Pulumi's Go plugins (and this
project's language host), it checks that its engine still answers and exits when it does not.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Optional

ENGINE_CHECK_SECONDS = 5.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_started = threading.Event()


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
