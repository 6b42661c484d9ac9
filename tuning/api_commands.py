"""`python -m tuning jobs|generate|endpoints|models ...`: the API from the command line.

Target: `--project` (or GOOGLE_CLOUD_PROJECT), `--location` (us-central1), and `--emulator URL`
(or TT_EMULATOR_ENDPOINT) to talk to the local emulator instead of Vertex AI.

`endpoints undeploy|delete` and `models delete` clean up what a succeeded job leaves behind (its endpoint and
tuned model outlive it, and cost money): one stdout line per action done, one `error: ...` line and exit 1 when
the service refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from tuning.errors import ConfigError, NotFoundError, TuningError

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import TuningJob

    from tuning.client import ApiTarget, TuningApi

# The Google clients load in about a second: each handler imports what it calls, so that
# `python -m tuning validate` (a pre-commit hook) never pays for them.

EXIT_OK, EXIT_ERROR = 0, 1
EXIT_INTERRUPTED = 130  # as a shell reports Ctrl-C
# An endpoint or model ID, a model's with an optional `@version`.
_ID = r"[A-Za-z0-9_-]+(@[A-Za-z0-9_-]+)?"


def add_api_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `jobs` (list/get/cancel/metrics), `generate`, `endpoints` (undeploy/delete) and `models` (delete)
    on the top-level subparsers."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT"),
                        help="GCP project (default: $GOOGLE_CLOUD_PROJECT)")
    target.add_argument("--location", default="us-central1", help="region (default: us-central1)")
    target.add_argument("--emulator", default=os.environ.get("TT_EMULATOR_ENDPOINT"), metavar="URL",
                        help="emulator base URL, e.g. http://127.0.0.1:8080 (default: $TT_EMULATOR_ENDPOINT)")

    jobs = commands.add_parser("jobs", help="list, show, cancel tuning jobs and read their metrics")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[target], help="tuning jobs, newest first")
    listing.add_argument("--filter", default="", help='list filter, e.g. labels.team="ml" AND state=JOB_STATE_RUNNING')
    listing.set_defaults(handler=_list_jobs)
    for name, handler, text in (("get", _get_job, "one job as JSON"), ("cancel", _cancel_job, "cancel a job"),
                                ("metrics", _job_metrics, "latest value of each tuning metric")):
        action = actions.add_parser(name, parents=[target], help=text)
        action.add_argument("name", help="projects/P/locations/L/tuningJobs/ID")
        action.set_defaults(handler=handler)
        if name == "metrics":
            action.add_argument("--follow", action="store_true",
                                help="show a progress bar (step, state, train loss) on stderr until the job ends; "
                                     "exit 1 if it does not succeed. Ctrl-C stops following, not the job")
            action.add_argument("--png", metavar="FILE",
                                help="also draw the six metric curves into FILE (PNG, 1200x650, the console's layout)")

    generate = commands.add_parser("generate", parents=[target], help="prompt a tuned endpoint")
    generate.add_argument("endpoint", help="projects/P/locations/L/endpoints/ID")
    generate.add_argument("prompt", help='e.g. "English: Good morning. Spanish:"')
    generate.add_argument("--max-output-tokens", type=int, default=256)
    generate.add_argument("--temperature", type=float, default=0.0)
    generate.set_defaults(handler=_generate)

    endpoints = commands.add_parser("endpoints", help="undeploy or delete a tuned endpoint")
    actions = endpoints.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
            ("undeploy", _undeploy_endpoint, "undeploy every model deployed on the endpoint (it stops serving "
                                             "and stops costing serving nodes; the endpoint stays)"),
            ("delete", _delete_endpoint, "undeploy every model deployed on the endpoint, then delete it")):
        action = actions.add_parser(name, parents=[target], help=text, description=text)
        action.add_argument("endpoint", metavar="ENDPOINT",
                            help="projects/P/locations/L/endpoints/ID (a job's tunedModel.endpoint), or ID")
        action.set_defaults(handler=handler)

    models = commands.add_parser("models", help="delete a tuned model")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    text = "delete a tuned model (undeploy it first, or delete its endpoint)"
    delete = actions.add_parser("delete", parents=[target], help=text, description=text)
    delete.add_argument("model", metavar="MODEL",
                        help="projects/P/locations/L/models/ID[@1] (a job's tunedModel.model), or ID")
    delete.set_defaults(handler=_delete_model)


def _target(args: argparse.Namespace) -> "ApiTarget":
    if not args.project:
        raise ConfigError("--project", "is required (or set GOOGLE_CLOUD_PROJECT)")
    from tuning.client import ApiTarget

    return ApiTarget(project=args.project, location=args.location, emulator_endpoint=args.emulator)


def _resource_name(args: argparse.Namespace, collection: str, value: str) -> str:
    """`value` as a full resource name of `collection` (`endpoints` or `models`): an ID is completed with the
    target's project and location by the official client's path helper.

    A full name must be in the target's location: Vertex AI serves each region on its own host.
    """
    from google.cloud.aiplatform_v1 import EndpointServiceClient, ModelServiceClient

    make, parse = {"endpoints": (EndpointServiceClient.endpoint_path, EndpointServiceClient.parse_endpoint_path),
                   "models": (ModelServiceClient.model_path, ModelServiceClient.parse_model_path)}[collection]
    if re.fullmatch(_ID, value):
        target = _target(args)
        return make(target.project, target.location, value)
    found = parse(value)
    # The helpers' patterns let a part hold '/': each part is one path segment, the last one an ID.
    if not found or any("/" in part for part in found.values()) or not re.fullmatch(_ID, list(found.values())[-1]):
        raise ConfigError(collection.rstrip("s").upper(),
                          f"expected projects/P/locations/L/{collection}/ID or an ID, got {value!r}")
    if found["location"] != args.location:
        raise ConfigError("--location", f"{value} is in {found['location']}; pass --location {found['location']}")
    return value


# A command's handler: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]


def _reporting_errors(run: Handler) -> Handler:
    """`run`, with a `TuningError` reported as one `error: ...` line on stderr and exit status 1."""
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except TuningError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR
    return handler


@_reporting_errors
def _list_jobs(args: argparse.Namespace) -> int:
    from tuning.client import TuningApi

    for job in TuningApi(_target(args)).list_tuning_jobs(filter=args.filter):
        print(f"{job.name}\t{job.state.name if job.state else ''}\t{job.tuned_model_display_name}")
    return EXIT_OK


@_reporting_errors
def _get_job(args: argparse.Namespace) -> int:
    from tuning.client import TuningApi
    from tuning.vertex import to_rest_json

    job = TuningApi(_target(args)).get_tuning_job(args.name)
    if job is None:
        raise NotFoundError("tuning job", args.name)
    print(json.dumps(to_rest_json(job), indent=2))
    return EXIT_OK


@_reporting_errors
def _cancel_job(args: argparse.Namespace) -> int:
    from tuning.client import TuningApi

    if not TuningApi(_target(args)).cancel_tuning_job(args.name):
        print(f"error: tuning job {args.name} is gone or has already ended", file=sys.stderr)
        return EXIT_ERROR
    print(f"cancel requested: {args.name}")
    return EXIT_OK


@_reporting_errors
def _job_metrics(args: argparse.Namespace) -> int:
    from tuning.client import TuningApi

    api = TuningApi(_target(args))
    job = api.get_tuning_job(args.name)
    if job is None:
        raise NotFoundError("tuning job", args.name)
    if args.follow:
        try:
            job = follow_job(api, job)
        except KeyboardInterrupt:
            print(f"\nstopped following; tuning job {job.name} keeps running", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(json.dumps(api.latest_metrics(job), indent=2, sort_keys=True))
    if args.png:
        from tuning.curves import render_curves

        path = render_curves(api.metric_series(job), Path(args.png),
                             title=f"{job.name} ({job.state.name if job.state else 'no state'})")
        print(f"curves: {path}", file=sys.stderr)
    if args.follow and job.state.name != "JOB_STATE_SUCCEEDED":
        print(f"error: tuning job {job.name} ended {job.state.name}: {job.error.message or 'no error message'}",
              file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def follow_job(api: "TuningApi", job: "TuningJob") -> "TuningJob":
    """Poll `job` until it ends, drawing a progress bar on stderr (steps done of the job's total); returns the
    job as it ended. Polls like the provider: the end is seen within max(2 s, 10% of the job's time)."""
    from tqdm import tqdm

    from tuning.polling import poll_until
    from tuning.progress import LOSS_METRIC, ProportionalBackoff, elapsed_seconds, job_progress, total_steps
    from tuning.vertex import has_ended

    bar = tqdm(total=total_steps(job), unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)

    def draw(current: "TuningJob") -> None:
        progress = job_progress(current, api.metric_series(current))
        bar.total = progress.total_steps
        bar.n = progress.step or 0
        bar.set_description(progress.state, refresh=False)
        bar.set_postfix_str(f"{LOSS_METRIC} {progress.loss:.4g}" if progress.loss is not None else "", refresh=False)
        bar.refresh()

    schedule = ProportionalBackoff(minimum=2.0, maximum=10.0 if api.target.emulator_endpoint else 30.0,
                                   already_elapsed=elapsed_seconds(job))
    try:
        return poll_until(lambda: api.get_tuning_job(job.name) or job, has_ended,
                          timeout=float("inf"), backoff=schedule, on_poll=draw)
    finally:
        bar.close()


@_reporting_errors
def _generate(args: argparse.Namespace) -> int:
    from tuning.prediction import PredictionApi

    reply = PredictionApi(_target(args)).generate(args.endpoint, args.prompt,
                                                  max_output_tokens=args.max_output_tokens,
                                                  temperature=args.temperature)
    print(reply.text)
    print(f"finish: {reply.finish_reason}, tokens: {reply.prompt_token_count} prompt + "
          f"{reply.candidates_token_count} output", file=sys.stderr)
    return EXIT_OK


@_reporting_errors
def _undeploy_endpoint(args: argparse.Namespace) -> int:
    from tuning.models_api import ModelsApi

    endpoint = _resource_name(args, "endpoints", args.endpoint)
    undeployed = 0
    for deployed_model_id in ModelsApi(_target(args)).undeploy_all(endpoint):
        print(f"undeployed {deployed_model_id} from {endpoint}", flush=True)
        undeployed += 1
    if not undeployed:
        print(f"no model is deployed on {endpoint}", file=sys.stderr)
    return EXIT_OK


@_reporting_errors
def _delete_endpoint(args: argparse.Namespace) -> int:
    from tuning.models_api import ModelsApi

    endpoint = _resource_name(args, "endpoints", args.endpoint)
    api = ModelsApi(_target(args))
    for deployed_model_id in api.undeploy_all(endpoint):
        print(f"undeployed {deployed_model_id} from {endpoint}", flush=True)
    api.delete_endpoint(endpoint)
    print(f"deleted {endpoint}")
    return EXIT_OK


@_reporting_errors
def _delete_model(args: argparse.Namespace) -> int:
    from tuning.models_api import ModelsApi

    model = _resource_name(args, "models", args.model)
    ModelsApi(_target(args)).delete_model(model)
    print(f"deleted {model}")
    return EXIT_OK
