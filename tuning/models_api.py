"""Clean up what a tuning job leaves behind: undeploy and delete its endpoint, delete its tuned model.

Both outlive the job and cost money on GCP (the endpoint's deployed model above all). The calls go through the
official aiplatform v1 EndpointService and ModelService clients (REST), against Vertex AI or the emulator. Each
call answers a long-running operation; these methods wait for it to finish.

Every call is retried (429, 5xx, connection errors; `RetryPolicy`). Gets only read. undeployModel and delete are
idempotent in effect: once one attempt has been served, a retry answers 404 (the DeployedModel, the endpoint or
the model is gone), which after a retried attempt means "done", not "not found".
"""

from __future__ import annotations

import concurrent.futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth.credentials import Credentials
from google.cloud import aiplatform_v1

from tuning.client import ApiTarget, RetryPolicy, answered, calling, rpc_status
from tuning.errors import NotFoundError, WaitTimeoutError

# Undeploying a model from a real endpoint takes minutes (the serving nodes are drained and released).
OPERATION_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Undeploy:
    """One undeployModel call: the DeployedModel id, and the traffic split to set (None: leave it as it is)."""

    deployed_model_id: str
    traffic_split: Optional[dict[str, int]] = None


def undeploy_plan(deployed_model_ids: Iterable[str], traffic_split: Mapping[str, int]) -> list[Undeploy]:
    """The undeployModel calls that empty an endpoint, in order.

    Vertex AI undeploys a DeployedModel only when it gets no traffic, or when the request's traffic split takes
    its share away. So the models without traffic go first, untouched; each later one, while others remain,
    hands all traffic to one of them (they are all about to go); the last one needs no split (Vertex AI empties
    it when the last model leaves).
    """
    remaining = list(deployed_model_ids)
    order = sorted(remaining, key=lambda model_id: traffic_split.get(model_id, 0) > 0)
    split = dict(traffic_split)
    plan = []
    for model_id in order:
        remaining.remove(model_id)
        if split.get(model_id, 0) > 0 and remaining:
            split = {other: 100 if index == 0 else 0 for index, other in enumerate(remaining)}
            plan.append(Undeploy(model_id, split))
        else:
            plan.append(Undeploy(model_id))
    return plan


class ModelsApi:
    """endpoints.get/undeployModel/delete and models.get/delete, against Vertex AI or the emulator.

    A missing resource is `NotFoundError` ("<kind> NAME not found"); a resource still in use is the API's
    `ApiError` (400 FAILED_PRECONDITION) saying what to clean up first; an operation that did not finish in time
    is `WaitTimeoutError`. Retries that kept failing, an unreachable service, a denied permission or quota are
    `ApiCallError`, naming the call.
    """

    def __init__(self, target: ApiTarget, *, credentials: Optional[Credentials] = None,
                 retry_policy: Optional[RetryPolicy] = None) -> None:
        self.target = target
        self.retry_policy = retry_policy or RetryPolicy.from_environment()
        self._endpoints = target.rest_client(aiplatform_v1.EndpointServiceClient, credentials)
        self._models = target.rest_client(aiplatform_v1.ModelServiceClient, credentials)

    @contextmanager
    def _call(self, method: str, kind: str, name: str,
              still_deployed: Optional[Callable[[], str]] = None) -> Iterator[_Attempts]:
        """One retried call (and the wait for its operation); what it raises leaves as one of our errors."""
        retried: list[BaseException] = []
        attempts = _Attempts(self.retry_policy.retry(on_error=retried.append), self.retry_policy.attempt_timeout)
        with calling(method, name, self.target, self.retry_policy):
            try:
                yield attempts
            except gexc.NotFound as error:
                if retried and method != "endpoints.get":
                    return  # an earlier attempt was served and its answer lost: the retry finds the work done
                raise NotFoundError(kind, name) from error
            except gexc.GoogleAPICallError as error:
                # FAILED_PRECONDITION: gRPC raises its own class; REST maps every 400 to BadRequest (the envelope says).
                if still_deployed is not None and rpc_status(error) == "FAILED_PRECONDITION":
                    raise answered(error, still_deployed()) from error
                raise
            except concurrent.futures.TimeoutError as error:
                raise WaitTimeoutError(f"{kind} {name}: the operation did not finish within {OPERATION_TIMEOUT:.0f}s; "
                                       "it may still be running (check the console), run the command again later",
                                       OPERATION_TIMEOUT) from error

    # -- endpoints ---------------------------------------------------------------------------------

    def get_endpoint(self, name: str) -> aiplatform_v1.Endpoint:
        with self._call("endpoints.get", "endpoint", name) as call:
            return self._endpoints.get_endpoint(name=name, retry=call.retry, timeout=call.timeout)

    def undeploy(self, endpoint: str, step: Undeploy) -> None:
        """endpoints.undeployModel of one DeployedModel, waiting for the operation."""
        request = aiplatform_v1.UndeployModelRequest(endpoint=endpoint, deployed_model_id=step.deployed_model_id,
                                                     traffic_split=step.traffic_split or {})
        with self._call("endpoints.undeployModel", "deployed model",
                        f"{step.deployed_model_id} of endpoint {endpoint}") as call:
            self._endpoints.undeploy_model(request=request, retry=call.retry,
                                           timeout=call.timeout).result(timeout=OPERATION_TIMEOUT)

    def undeploy_all(self, endpoint: str) -> Iterator[str]:
        """Undeploy every model deployed on `endpoint`; yields each DeployedModel id once it is undeployed."""
        found = self.get_endpoint(endpoint)
        for step in undeploy_plan([model.id for model in found.deployed_models], dict(found.traffic_split)):
            self.undeploy(endpoint, step)
            yield step.deployed_model_id

    def delete_endpoint(self, name: str) -> None:
        """endpoints.delete, waiting for the operation; the endpoint must have no deployed model."""
        still_deployed = (f"endpoint {name} still has deployed models; undeploy them first "
                          f"(python -m tuning endpoints undeploy {name})")
        with self._call("endpoints.delete", "endpoint", name, still_deployed=lambda: still_deployed) as call:
            self._endpoints.delete_endpoint(name=name, retry=call.retry,
                                            timeout=call.timeout).result(timeout=OPERATION_TIMEOUT)

    # -- models ------------------------------------------------------------------------------------

    def delete_model(self, name: str) -> None:
        """models.delete, waiting for the operation; the model must be deployed nowhere."""
        with self._call("models.delete", "model", name, still_deployed=lambda: self._still_deployed(name)) as call:
            self._models.delete_model(name=name, retry=call.retry,
                                      timeout=call.timeout).result(timeout=OPERATION_TIMEOUT)

    def _still_deployed(self, name: str) -> str:
        """What to do about a model that is still deployed, naming its endpoints when they can be read."""
        try:
            model = self._models.get_model(name=name, retry=self.retry_policy.retry(),
                                           timeout=self.retry_policy.attempt_timeout)
            endpoints = sorted({deployed.endpoint for deployed in model.deployed_models})
        except Exception:  # noqa: BLE001 - only improves the message: without the endpoints it stays right
            endpoints = []
        if not endpoints:
            return (f"model {name} is still deployed to an endpoint; undeploy it or delete the endpoint first "
                    "(python -m tuning endpoints undeploy|delete ENDPOINT)")
        first = endpoints[0]
        return (f"model {name} is still deployed to {', '.join(endpoints)}; undeploy it first "
                f"(python -m tuning endpoints undeploy {first}) or delete the endpoint "
                f"(python -m tuning endpoints delete {first})")


@dataclass(frozen=True)
class _Attempts:
    """How one call is attempted: pass `retry` and `timeout` to the client method."""

    retry: gretry.Retry
    timeout: float

