"""`python -m tuning jobs ...` and `python -m tuning generate ...`: the API from the command line.

Target: `--project` (or GOOGLE_CLOUD_PROJECT), `--location` (us-central1), and `--emulator URL`
(or TT_EMULATOR_ENDPOINT) to talk to the local emulator instead of Vertex AI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tuning.client import ApiTarget, TuningApi
from tuning.errors import ApiError, ConfigError
from tuning.prediction import PredictionApi

EXIT_OK, EXIT_ERROR = 0, 1


def add_api_commands(commands: argparse._SubParsersAction) -> None:
    """Register `jobs` (list/get/cancel/metrics) and `generate` on the top-level subparsers."""
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

    generate = commands.add_parser("generate", parents=[target], help="prompt a tuned endpoint")
    generate.add_argument("endpoint", help="projects/P/locations/L/endpoints/ID")
    generate.add_argument("prompt", help='e.g. "English: Good morning. Spanish:"')
    generate.add_argument("--max-output-tokens", type=int, default=256)
    generate.add_argument("--temperature", type=float, default=0.0)
    generate.set_defaults(handler=_generate)


def _target(args: argparse.Namespace) -> ApiTarget:
    if not args.project:
        raise ConfigError("--project", "is required (or set GOOGLE_CLOUD_PROJECT)")
    return ApiTarget(project=args.project, location=args.location, emulator_endpoint=args.emulator)


def _reporting_errors(run):
    def handler(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (ApiError, ConfigError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR
    return handler


@_reporting_errors
def _list_jobs(args: argparse.Namespace) -> int:
    for job in TuningApi(_target(args)).list_tuning_jobs(filter=args.filter):
        print(f"{job.name}\t{job.state.value if job.state else ''}\t{job.tuned_model_display_name or ''}")
    return EXIT_OK


@_reporting_errors
def _get_job(args: argparse.Namespace) -> int:
    job = TuningApi(_target(args)).get_tuning_job(args.name)
    if job is None:
        raise ApiError(404, f"tuning job {args.name} not found")
    print(json.dumps(job.to_wire(), indent=2))
    return EXIT_OK


@_reporting_errors
def _cancel_job(args: argparse.Namespace) -> int:
    if not TuningApi(_target(args)).cancel_tuning_job(args.name):
        raise ApiError(400, f"tuning job {args.name} is gone or has already ended")
    print(f"cancel requested: {args.name}")
    return EXIT_OK


@_reporting_errors
def _job_metrics(args: argparse.Namespace) -> int:
    api = TuningApi(_target(args))
    job = api.get_tuning_job(args.name)
    if job is None:
        raise ApiError(404, f"tuning job {args.name} not found")
    print(json.dumps(api.latest_metrics(job), indent=2, sort_keys=True))
    return EXIT_OK


@_reporting_errors
def _generate(args: argparse.Namespace) -> int:
    reply = PredictionApi(_target(args)).generate(args.endpoint, args.prompt,
                                                  max_output_tokens=args.max_output_tokens,
                                                  temperature=args.temperature)
    print(reply.text)
    print(f"finish: {reply.finish_reason}, tokens: {reply.prompt_token_count} prompt + "
          f"{reply.candidates_token_count} output", file=sys.stderr)
    return EXIT_OK
