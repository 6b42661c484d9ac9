"""Control routes under `/_emulator/`: health, reset, fault injection, metrics (and their curves) and the job table."""

from __future__ import annotations

from typing import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from emulator.faults import FaultInjector
from emulator.job_store import JobStore
from emulator.jobs import job_resource_name
from emulator.requests import read_json
from emulator.routes import ApiRoute, route
from tuning.curves import curves_png
from tuning.limits import ALL_METRICS


class ControlApi:
    """Routes for tests, the console and the provider's metrics; never part of the Google surface."""

    def __init__(self, jobs: JobStore, faults: FaultInjector, reset: Callable[[], None]) -> None:
        self.jobs = jobs
        self.faults = faults
        self._reset = reset

    def routes(self) -> list[ApiRoute]:
        jobs = "/_emulator/v1/projects/{project}/locations/{location}/tuningJobs"
        return [
            route("GET", "/_emulator/health", self.health),
            route("POST", "/_emulator/reset", self.reset),
            route("GET", "/_emulator/faults", self.list_faults),
            route("POST", "/_emulator/faults", self.add_fault),
            route("DELETE", "/_emulator/faults", self.clear_faults),
            route("GET", "/_emulator/v1/tuningJobs", self.all_jobs),
            route("GET", jobs + "/{job}/metrics", self.job_metrics),
            route("GET", jobs + "/{job}/curves.png", self.job_curves),
        ]

    async def health(self, request: Request) -> JSONResponse:
        self.jobs.check_health()
        return JSONResponse({"status": "ok"})

    async def reset(self, request: Request) -> JSONResponse:
        self._reset()
        return JSONResponse({})

    async def list_faults(self, request: Request) -> JSONResponse:
        return JSONResponse({"faults": self.faults.list()})

    async def add_fault(self, request: Request) -> JSONResponse:
        fault = self.faults.add(await read_json(request, 64 * 1024))
        return JSONResponse(fault.model_dump(mode="json"))

    async def clear_faults(self, request: Request) -> JSONResponse:
        self.faults.clear()
        return JSONResponse({})

    async def all_jobs(self, request: Request) -> JSONResponse:
        """Every job of every project, newest first (the console's table)."""
        return JSONResponse({"tuningJobs": self.jobs.all_jobs(limit=500)})

    async def job_metrics(self, request: Request, project: str, location: str, job: str) -> JSONResponse:
        """`{tuningJob, series: {metric: [{step, value, time}]}, latest: {metric: value}}`.

        Metric names are Vertex AI's (`/train_total_loss`, ...); `latest` holds the
        value at the highest step of each metric that has been computed so far.
        """
        self.jobs.job(project, location, job)
        series = self.jobs.metric_series(job)
        latest = {name: points[-1]["value"] for name, points in series.items() if points}
        ordered = {name: series[name] for name in ALL_METRICS if name in series}
        return JSONResponse({"tuningJob": job_resource_name(project, location, job), "series": ordered,
                             "latest": latest})

    async def job_curves(self, request: Request, project: str, location: str, job: str) -> Response:
        """The six metric curves as a 1200 x 650 PNG, drawn like `python -m tuning jobs metrics JOB --png`."""
        self.jobs.job(project, location, job)
        series = {name.lstrip("/"): [(point["step"], point["value"]) for point in points]
                  for name, points in self.jobs.metric_series(job).items()}
        png = await run_in_threadpool(curves_png, series, title=job_resource_name(project, location, job))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
