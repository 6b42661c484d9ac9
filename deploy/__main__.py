"""`python -m deploy COMMAND [--stack NAME]`: run the stack with the pinned engine, offline.

Commands: preview, up, refresh, destroy, outputs, try PROMPT (prompt the stack's tuned endpoint),
forget (drop the local stack's state; local only), emulator-start, emulator-stop.
For a stack whose emulatorEndpoint is `embedded` (the `local` stack), the emulator is started in the
background first (or reused) and its URL is filled in for the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pulumi.automation import CommandError

from deploy.emulator_process import EmulatorProcess
from deploy.engine import LOCAL_STACKS, PROJECT_DIR
from deploy.stack import ENDPOINT_KEY, StackRun
from tuning.client import ApiTarget
from tuning.errors import TuningError
from tuning.prediction import PredictionApi

COMMANDS = ("preview", "up", "refresh", "destroy", "outputs", "try", "forget", "emulator-start", "emulator-stop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("prompt", nargs="?", help='for try: the prompt, e.g. "English: Good morning. Spanish:"')
    parser.add_argument("--stack", default="local", help="stack name (default: local)")
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    run = StackRun.for_project(args.project_dir.resolve(), args.stack)
    emulator = EmulatorProcess(run.run_dir / "emulator")
    if args.command == "emulator-stop":
        print("emulator stopped" if emulator.stop() else "no emulator was running")
        return 0
    if args.command == "forget" and args.stack not in LOCAL_STACKS:
        print(f"error: forget drops state without destroying anything; it is only for {', '.join(LOCAL_STACKS)}",
              file=sys.stderr)
        return 2
    try:
        return _run_command(args, run, emulator)
    except (TuningError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except CommandError as error:
        # The engine's output was already streamed; its stderr, when there is one, holds the reason.
        _, _, stderr = str(error).partition("\n stderr: ")
        print(f"error: pulumi {args.command} failed" + (f":\n{stderr.strip()}" if stderr.strip() else
                                                         " (the engine's output above says why)"), file=sys.stderr)
        return 1


def _run_command(args: argparse.Namespace, run: StackRun, emulator: EmulatorProcess) -> int:
    endpoint = emulator.ensure_running() if run.needs_embedded_emulator() else None
    if args.command == "emulator-start":
        print(f"emulator: {endpoint or 'not used by stack ' + args.stack}")
        return 0
    if endpoint:
        print(f"emulator: {endpoint}  (console: {endpoint}/)", file=sys.stderr)
    stack = run.open()
    config_file = str(run.config_file(endpoint))
    if args.command == "preview":
        stack.preview(config_file=config_file, diff=True, on_output=print)
    elif args.command == "up":
        stack.up(config_file=config_file, on_output=print)
    elif args.command == "refresh":
        stack.refresh(config_file=config_file, on_output=print)
    elif args.command == "destroy":
        stack.destroy(config_file=config_file, on_output=print)
    elif args.command == "try":
        return _try_prompt(run, stack, endpoint, args.prompt)
    elif args.command == "forget":
        stack.workspace.remove_stack(args.stack, force=True)
        print(f"stack {args.stack} forgotten")
    else:
        outputs = {key: value.value for key, value in stack.outputs().items()}
        print(json.dumps(outputs, indent=2, sort_keys=True))
    if endpoint and args.command in ("up", "refresh"):
        print(f"\nemulator console: {endpoint}/", file=sys.stderr)
    return 0


def _try_prompt(run: StackRun, stack, emulator_endpoint: str | None, prompt: str | None) -> int:
    """Send `prompt` to the stack's tuned endpoint and print the reply."""
    if not prompt:
        print('error: try needs a prompt, e.g. python -m deploy try "English: Good morning. Spanish:"',
              file=sys.stderr)
        return 2
    outputs = {key: value.value for key, value in stack.outputs().items()}
    endpoint = outputs.get("tunedModelEndpointName")
    if not endpoint:
        print(f"error: stack {run.stack} has no tuned endpoint yet (state: {outputs.get('state')}); run up or "
              "refresh first", file=sys.stderr)
        return 1
    config = run.stack_config()
    target = ApiTarget(project=str(config.get("gcp:project")), location=str(config.get("gcp:region", "us-central1")),
                       emulator_endpoint=emulator_endpoint or config.get(ENDPOINT_KEY) or None)
    reply = PredictionApi(target).generate(endpoint, prompt)
    print(reply.text)
    print(f"({endpoint}: {reply.finish_reason}, {reply.prompt_token_count} prompt + "
          f"{reply.candidates_token_count} output tokens)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
