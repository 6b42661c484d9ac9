"""pulumi-language-python: a Python language host for the Pulumi engine, written in Python.

The engine starts it as `pulumi-language-python [--logtostderr] [-v=N] [--tracing URL] ENGINE_ADDRESS`
in the program directory, reads the port from the first stdout line, and drives the LanguageRuntime
service over gRPC. Programs run through the official `pulumi-language-python-exec` runner, which is
installed beside this folder. The engine ends the host with SIGINT: it then stops its children and
exits quietly. If the engine dies without saying so (SIGKILL, a lost CI runner), the host notices
that its engine no longer answers and ends the same way, instead of living on as an orphan.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Optional

import grpc
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import language_pb2_grpc

from runtime_service import LanguageHost

HOST_DIR = Path(__file__).resolve().parent
# One host instance serves Run, every policy pack's RunPlugin stream and unary calls at once.
WORKERS = 32
ENGINE_CHECK_SECONDS = 5.0
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def watch_engine(address: str, stopping: threading.Event) -> None:
    """Set `stopping` once the engine at `address` stops answering (its process is gone)."""
    channel = grpc.insecure_channel(address, options=_GRPC_CHANNEL_OPTIONS)
    check = channel.unary_unary(HEALTH_CHECK)  # raw bytes: an empty HealthCheckRequest is b""
    while not stopping.wait(ENGINE_CHECK_SECONDS):
        try:
            check(b"", timeout=ENGINE_CHECK_SECONDS)
        except grpc.RpcError as error:
            # Any answer, even UNIMPLEMENTED, means the engine is alive (the Go plugins' rule).
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                logging.getLogger("pulumi-language-python").warning("the engine at %s is gone; stopping", address)
                stopping.set()
    channel.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pulumi-language-python", description=__doc__.splitlines()[0])
    parser.add_argument("--logtostderr", action="store_true")
    parser.add_argument("-v", dest="verbosity", default="0", help="log verbosity, as -v=N")
    parser.add_argument("--tracing")
    parser.add_argument("--exec", dest="exec_script", type=Path, default=HOST_DIR.parent / "pulumi-language-python-exec",
                        help=argparse.SUPPRESS)
    parser.add_argument("engine_address")
    args, _unknown = parser.parse_known_args(argv)  # flags of newer engines are not ours to refuse
    return args


def host_version() -> str:
    """The version written beside the host at install time (the pinned CLI's); empty when unknown."""
    try:
        return (HOST_DIR / "VERSION").read_text().strip().lstrip("v")
    except OSError:
        return ""


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    verbosity = int(str(args.verbosity).lstrip("=") or 0)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.logtostderr and verbosity >= 5 else
                        logging.WARNING, format="pulumi-language-python: %(message)s")
    host = LanguageHost(engine_address=args.engine_address, exec_script=args.exec_script, version=host_version(),
                        tracing=args.tracing)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="language-host"),
                         options=_GRPC_CHANNEL_OPTIONS)
    language_pb2_grpc.add_LanguageRuntimeServicer_to_server(host, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # The engine sends SIGINT at close: stop without a KeyboardInterrupt traceback in its output.
        signal.signal(sig, lambda *_: stopping.set())
    print(port, flush=True)
    threading.Thread(target=watch_engine, args=(args.engine_address, stopping), daemon=True,
                     name="engine-watch").start()
    stopping.wait()
    host.children.cancel_all()
    server.stop(grace=2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
