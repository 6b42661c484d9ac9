"""`create_app(settings)`: the emulator as one ASGI app (Vertex AI, GCS, control routes, console)."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from emulator.control import ControlApi
from emulator.db import Database
from emulator.faults import FaultInjector, FaultMiddleware
from emulator.gcs import ObjectStore, gcs_routes
from emulator.guard import RequestGuard
from emulator.job_runner import JobRunner
from emulator.job_store import JobStore
from emulator.metadata_api import MetadataApi
from emulator.prediction import ModelCache
from emulator.routes import api_app, route
from emulator.settings import EmulatorSettings
from emulator.tuned_models import TunedModels
from emulator.vertex_api import VertexApi

CONSOLE_PAGE = Path(__file__).with_name("console.html")


@dataclass
class EmulatorState:
    """The parts of a running emulator, reachable from tests as `app.state.emulator`."""

    settings: EmulatorSettings
    db: Database
    store: ObjectStore
    jobs: JobStore
    tuned_models: TunedModels
    runner: JobRunner
    faults: FaultInjector
    models: ModelCache

    def reset(self) -> None:
        """Forget every job, model, bucket and object, and their files (the runner keeps serving)."""
        self.faults.clear()
        self.jobs.reset()
        self.tuned_models.reset()
        self.runner.reset()  # after the rows are gone: the worker then drops its job instead of training it
        self.models.clear()
        self.store.reset()


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """Build the app; state lives under `settings.data_dir` and survives a restart."""
    settings = settings or EmulatorSettings()
    data_dir = settings.data_dir.resolve()
    db = Database(data_dir / "state.sqlite3")
    store = ObjectStore(db, data_dir / "objects", settings.max_upload_bytes)
    jobs = JobStore(db)
    tuned_models = TunedModels(db)
    runner = JobRunner(jobs, store, settings.training, data_dir / "jobs")
    faults = FaultInjector()
    models = ModelCache()
    state = EmulatorState(settings, db, store, jobs, tuned_models, runner, faults, models)
    vertex = VertexApi(jobs, tuned_models, store, runner, models, settings.max_json_bytes)

    async def console(request: Request) -> Response:
        return FileResponse(CONSOLE_PAGE, media_type="text/html")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    routes = [route("GET", "/", console), *ControlApi(jobs, faults, state.reset).routes(),
              *MetadataApi(jobs).routes(), *vertex.routes(), *gcs_routes(store)]
    # The guard first: a refused request reaches nothing, not even a fault.
    app = api_app(routes, [Middleware(RequestGuard, bind_host=settings.host),
                           Middleware(FaultMiddleware, faults=faults)],
                  lifespan=lifespan)
    app.state.emulator = state
    return app
