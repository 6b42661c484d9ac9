"""The LanguageRuntime service: runs Python programs and policy packs for the Pulumi engine."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import grpc
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import language_pb2, language_pb2_grpc, plugin_pb2

from children import Children, stop, stream_lines
from interpreter import Interpreter, InterpreterError, python_on_path, virtualenv_dir
from policy_proxy import PolicyPackNotStarted, PolicyProxy, configuration_env

log = logging.getLogger("pulumi-language-python")

# The official runner's contract: 32 means "an error was already shown to the user".
EXIT_ALREADY_REPORTED = 32


def run_response(exit_code: int) -> language_pb2.RunResponse:
    """The RunResponse for the runner's exit code: 0 success, 32 bail, anything else an error."""
    if exit_code == 0:
        return language_pb2.RunResponse()
    if exit_code == EXIT_ALREADY_REPORTED:
        return language_pb2.RunResponse(bail=True)
    if exit_code < 0:
        return language_pb2.RunResponse(error=f"program was stopped by signal {signal.Signals(-exit_code).name}")
    return language_pb2.RunResponse(error=f"program exited with non-zero exit code: {exit_code}")


def runtime_options(info: language_pb2.ProgramInfo) -> dict[str, Any]:
    """Pulumi.yaml's `runtime.options` as a plain dict."""
    return json_format.MessageToDict(info.options) if info.HasField("options") else {}


class LanguageHost(language_pb2_grpc.LanguageRuntimeServicer):
    """What plain `pulumi preview/up/destroy` and `--policy-pack` need of a Python language host.

    RPCs it does not override answer UNIMPLEMENTED, which the engine tolerates for each of them.
    """

    def __init__(self, *, engine_address: str, exec_script: Path, version: str, tracing: Optional[str] = None):
        self.engine_address = engine_address
        self.exec_script = exec_script
        self.version = version
        self.tracing = tracing
        self.children = Children()

    def GetPluginInfo(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetRequiredPackages(self, request: language_pb2.GetRequiredPackagesRequest,
                            context: grpc.ServicerContext) -> language_pb2.GetRequiredPackagesResponse:
        # Resource plugins are loaded when a resource first needs them. Listing the venv's provider
        # packages here would make every command require all of them (the local stack never uses the
        # gcp plugin, which cannot be downloaded offline).
        return language_pb2.GetRequiredPackagesResponse()

    def GetRequiredPlugins(self, request: language_pb2.GetRequiredPluginsRequest,
                           context: grpc.ServicerContext) -> language_pb2.GetRequiredPluginsResponse:
        return language_pb2.GetRequiredPluginsResponse()

    def About(self, request: language_pb2.AboutRequest, context: grpc.ServicerContext) -> language_pb2.AboutResponse:
        try:
            interpreter = Interpreter.for_options(runtime_options(request.info), request.info.root_directory or
                                                  os.getcwd(), os.environ)
        except InterpreterError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        metadata = {"virtualenv": str(interpreter.virtualenv)} if interpreter.virtualenv else {}
        return language_pb2.AboutResponse(executable=interpreter.python, version=interpreter.version(),
                                          metadata=metadata)

    def Run(self, request: language_pb2.RunRequest, context: grpc.ServicerContext) -> language_pb2.RunResponse:
        info = request.info
        root = info.root_directory or request.pwd
        if request.attach_debugger:
            return language_pb2.RunResponse(error="this Python language host cannot attach a debugger")
        try:
            interpreter = Interpreter.for_options(runtime_options(info), root, os.environ)
        except InterpreterError as error:
            return language_pb2.RunResponse(error=str(error))
        program = os.path.join(info.program_directory, info.entry_point or ".") if info.program_directory \
            else request.program
        command = [interpreter.python, str(self.exec_script), "--monitor", request.monitor_address,
                   "--engine", self.engine_address, "--project", request.project, "--root_directory", root,
                   "--stack", request.stack, "--pwd", request.pwd, "--dry_run", str(request.dryRun).lower(),
                   "--parallel", str(request.parallel)]
        if self.tracing:
            command += ["--tracing", self.tracing]
        if request.organization:
            command += ["--organization", request.organization]
        command += [program, *request.args]
        env = interpreter.environment(os.environ)
        env.pop("PULUMI_CONFIG", None)
        if request.config:
            env["PULUMI_CONFIG"] = json.dumps(dict(request.config))
        env["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(list(request.configSecretKeys))
        try:
            # The program writes to the host's own stdout/stderr, which the engine shows as it runs.
            child = self.children.start(command, cwd=request.pwd or root, env=env, capture=False)
        except OSError as error:
            return language_pb2.RunResponse(
                error=f"problem executing program (could not run language executor): {error}")
        return run_response(self.children.wait(child))

    def InstallDependencies(self, request: language_pb2.InstallDependenciesRequest,
                            context: grpc.ServicerContext) -> Iterator[language_pb2.InstallDependenciesResponse]:
        root = request.info.root_directory or request.directory
        try:
            steps = list(install_steps(root, runtime_options(request.info), os.environ))
        except InterpreterError as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        for step in steps:
            if isinstance(step, str):
                yield language_pb2.InstallDependenciesResponse(stdout=step.encode())
                continue
            yield language_pb2.InstallDependenciesResponse(stdout=f"$ {' '.join(step)}\n".encode())
            try:
                child = self.children.start(step, cwd=root, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                            capture=True)
            except OSError as error:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"could not run {step[0]}: {error}")
            context.add_callback(lambda child=child: threading.Thread(target=stop, args=(child,)).start())
            for stream, line in stream_lines(child):
                yield language_pb2.InstallDependenciesResponse(**{stream: line})
            code = self.children.wait(child)
            if code != 0:
                context.abort(grpc.StatusCode.UNKNOWN,
                              f"installing dependencies failed: `{' '.join(step)}` exited with code {code}")

    def RunPlugin(self, request: language_pb2.RunPluginRequest,
                  context: grpc.ServicerContext) -> Iterator[language_pb2.RunPluginResponse]:
        info = request.info
        plugin_dir = info.program_directory or info.root_directory or request.pwd
        base_env = dict(entry.split("=", 1) for entry in request.env if "=" in entry) if request.env \
            else dict(os.environ)
        try:
            interpreter = Interpreter.for_options(runtime_options(info), info.root_directory or plugin_dir, base_env)
        except InterpreterError as error:
            yield language_pb2.RunPluginResponse(stderr=f"{error}\n".encode())
            yield language_pb2.RunPluginResponse(exitcode=1)
            return
        env = interpreter.environment(base_env)
        if request.kind == "analyzer":
            command = [interpreter.python, "-u", "-m", "pulumi.policy", *request.args, plugin_dir]
            yield from self._run_policy_pack(command, plugin_dir, env, context)
        else:
            program = os.path.join(plugin_dir, info.entry_point) if info.entry_point else plugin_dir
            yield from self._run_streamed([interpreter.python, "-u", program, *request.args], plugin_dir, env,
                                          context)

    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        # Answer at once; the children get their SIGINT now and a SIGKILL after the grace period.
        threading.Thread(target=self.children.cancel_all, name="cancel", daemon=True).start()
        return empty_pb2.Empty()

    def _run_streamed(self, command: list[str], cwd: str, env: dict[str, str],
                      context: grpc.ServicerContext) -> Iterator[language_pb2.RunPluginResponse]:
        try:
            child = self.children.start(command, cwd=cwd, env=env, capture=True)
        except OSError as error:
            yield language_pb2.RunPluginResponse(stderr=f"could not start {command[0]}: {error}\n".encode())
            yield language_pb2.RunPluginResponse(exitcode=1)
            return
        try:
            if not context.add_callback(lambda: threading.Thread(target=stop, args=(child,), daemon=True).start()):
                return  # the engine closed the stream already: nobody reads the plugin (finally stops it)
            for stream, line in stream_lines(child):
                yield _output(stream, line)
            yield language_pb2.RunPluginResponse(exitcode=self.children.wait(child))
        finally:
            stop(child)
            self.children.forget(child)

    def _run_policy_pack(self, command: list[str], pack_dir: str, env: dict[str, str],
                         context: grpc.ServicerContext) -> Iterator[language_pb2.RunPluginResponse]:
        proxy = PolicyProxy()
        child = None
        try:
            # add_callback is False when the stream has ended already; the callbacks would never run.
            if not context.add_callback(lambda: proxy.abort("the engine closed the policy pack's stream")):
                return
            yield language_pb2.RunPluginResponse(stdout=f"{proxy.port}\n".encode())
            try:
                configuration = proxy.await_configuration()
            except PolicyPackNotStarted:
                return
            env.update(configuration_env(configuration))
            log.debug("starting policy pack %s for stack %s", pack_dir, env.get("PULUMI_STACK"))
            try:
                child = self.children.start(command, cwd=pack_dir, env=env, capture=True)
            except OSError as error:
                proxy.abort(str(error))
                yield language_pb2.RunPluginResponse(stderr=f"could not start {command[0]}: {error}\n".encode())
                yield language_pb2.RunPluginResponse(exitcode=1)
                return
            if not context.add_callback(lambda: threading.Thread(target=stop, args=(child,), daemon=True).start()):
                return
            attached = False
            for stream, line in stream_lines(child):
                if stream == "stdout" and not attached:
                    port = _port(line)
                    if port is None:  # output printed before the pack serves: pass it on
                        yield language_pb2.RunPluginResponse(stdout=line)
                        continue
                    try:
                        proxy.attach(port)
                    except grpc.RpcError as error:
                        yield language_pb2.RunPluginResponse(
                            stderr=f"policy pack configuration failed: {error.details()}\n".encode())
                        stop(child)
                    except PolicyPackNotStarted:
                        stop(child)  # the engine closed the stream while the pack started: nobody will call it
                    attached = True
                    continue
                yield _output(stream, line)
            code = self.children.wait(child)
            if not attached:
                proxy.abort(f"the policy pack exited with code {code} before it served")
            yield language_pb2.RunPluginResponse(exitcode=code)
        finally:
            proxy.stop()
            if child is not None:
                stop(child)
                self.children.forget(child)


def _output(stream: str, line: bytes) -> language_pb2.RunPluginResponse:
    """A line a plugin printed on its "stdout" or "stderr" `stream`, as the response that passes it on."""
    if stream == "stdout":
        return language_pb2.RunPluginResponse(stdout=line)
    return language_pb2.RunPluginResponse(stderr=line)


def _port(line: bytes) -> Optional[int]:
    text = line.strip()
    return int(text) if text.isdigit() else None


def install_steps(root: str, options: Mapping[str, Any], environ: Mapping[str, str]) -> Iterator[Any]:
    """The commands (lists) and notes (strings) that install a project's requirements into its virtualenv."""
    requirements = Path(root) / "requirements.txt"
    venv = virtualenv_dir(options, root)
    if venv is not None:
        if not (venv / "bin" / "python").exists():
            yield [python_on_path(environ), "-m", "venv", str(venv)]
        python = str(venv / "bin" / "python")
    else:
        python = python_on_path(environ)
    if not requirements.exists():
        yield f"no requirements.txt in {root}: nothing to install\n"
        return
    yield [python, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(requirements)]
