"""A stand-in policy pack for the language host tests; MISBEHAVE names how it departs from a real pack.

    dead-port        prints a port nobody serves, then waits to be stopped.
    port-on-sigint   serves ConfigureStack but prints its port only when stopped (SIGINT), i.e. after the
                     engine closed the stream, then serves a little longer and exits.

It writes MISBEHAVE_READY once its SIGINT handling is in place, so a test knows when to close the stream.
"""

import os
import signal
import socket
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc


class Analyzer(analyzer_pb2_grpc.AnalyzerServicer):
    def ConfigureStack(self, request, context):
        return analyzer_pb2.AnalyzerStackConfigureResponse()


def main() -> None:
    mode = os.environ["MISBEHAVE"]
    if mode == "dead-port":
        with socket.socket() as unused:  # bound then closed: nothing listens there
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        Path(os.environ["MISBEHAVE_READY"]).write_text(str(os.getpid()))
        print(port, flush=True)
        time.sleep(60)
    elif mode == "port-on-sigint":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        analyzer_pb2_grpc.add_AnalyzerServicer_to_server(Analyzer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        stopped = []
        signal.signal(signal.SIGINT, lambda *_: stopped.append(True))
        Path(os.environ["MISBEHAVE_READY"]).write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not stopped and time.monotonic() < deadline:
            time.sleep(0.02)
        print(port, flush=True)
        time.sleep(2)  # still serving while the host reads the port
        server.stop(0)
    else:
        sys.exit(f"unknown MISBEHAVE mode {mode!r}")


main()
