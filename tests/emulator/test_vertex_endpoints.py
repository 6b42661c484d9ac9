"""Cleaning up a tuned model and its endpoint: undeployModel, endpoints.delete, models.delete and their operations.

Through the unmodified GAPIC clients (REST transport) and raw HTTP. Most tests give the backend a tuned model
directly (`insert_tuned_model`, the record a succeeded job leaves), since these routes never train; one test
runs a real job to see its endpoint stop serving.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1
from google.cloud import aiplatform_v1beta1 as v1beta1

from emulator.server import RunningEmulator, serve_in_thread
from emulator.tuned_models import TunedModelRecord
from tests.conftest import LOCATION, PROJECT, control, emulator_settings
from tests.emulator.helpers import wait_until_ended

PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
PROMPT = [v1.Content(role="user", parts=[v1.Part(text="English: Hello. Spanish:")])]


def tuned_model(emulator: RunningEmulator, job_id: str = "1") -> TunedModelRecord:
    """A tuned model deployed on its endpoint, as a succeeded job leaves it, with weights in the runner's dir."""
    model_dir = emulator.state.runner.work_dir / job_id / "run-test" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "weights.npz").write_bytes(b"weights")
    return emulator.state.tuned_models.insert(PROJECT, LOCATION, job_id, "cleanup", str(model_dir))


@pytest.fixture
def tuned(emulator: RunningEmulator) -> TunedModelRecord:
    return tuned_model(emulator)


def client(emulator: RunningEmulator, client_class: type) -> Any:
    return client_class(client_options={"api_endpoint": emulator.url}, transport="rest",
                        credentials=AnonymousCredentials())


@pytest.fixture
def endpoints(emulator: RunningEmulator) -> v1.EndpointServiceClient:
    return client(emulator, v1.EndpointServiceClient)


@pytest.fixture
def models(emulator: RunningEmulator) -> v1.ModelServiceClient:
    return client(emulator, v1.ModelServiceClient)


@pytest.fixture
def undeployed(endpoints, tuned) -> TunedModelRecord:
    endpoints.undeploy_model(endpoint=tuned.endpoint_name, deployed_model_id=tuned.id).result()
    return tuned


def model_path(record: TunedModelRecord) -> str:
    return record.model_name.split("@")[0]


def error_status(error: gexc.GoogleAPICallError) -> str:
    """The canonical status of the error envelope (the REST client maps every 400 to BadRequest)."""
    return error.response.json()["error"]["status"]


def call(emulator: RunningEmulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emulator.url}/{path}", timeout=30, **kwargs)


def assert_error(response: requests.Response, code: int, status: str, message: str) -> None:
    assert response.status_code == code
    assert response.json() == {"error": {"code": code, "message": message, "status": status}}


# --- through the official clients -------------------------------------------------------------------------


def test_endpoint_lists_the_tuned_model_as_deployed_with_all_traffic(endpoints, tuned):
    endpoint = endpoints.get_endpoint(name=tuned.endpoint_name)

    assert [(deployed.id, deployed.model) for deployed in endpoint.deployed_models] == [(tuned.id, model_path(tuned))]
    assert dict(endpoint.traffic_split) == {tuned.id: 100}


def test_undeploy_answers_a_done_operation_whose_result_is_an_undeploy_response(endpoints, tuned):
    operation = endpoints.undeploy_model(endpoint=tuned.endpoint_name, deployed_model_id=tuned.id)

    assert operation.done()
    assert operation.result() == v1.UndeployModelResponse()
    assert isinstance(operation.metadata, v1.UndeployModelOperationMetadata)


def test_endpoint_lists_no_deployed_model_after_undeploy(endpoints, undeployed):
    endpoint = endpoints.get_endpoint(name=undeployed.endpoint_name)

    assert (list(endpoint.deployed_models), dict(endpoint.traffic_split)) == ([], {})


def test_model_lists_no_deployment_after_undeploy(models, undeployed):
    assert list(models.get_model(name=undeployed.model_name).deployed_models) == []


def test_undeploy_of_an_id_not_deployed_raises_not_found(endpoints, tuned):
    with pytest.raises(gexc.NotFound) as raised:
        endpoints.undeploy_model(endpoint=tuned.endpoint_name, deployed_model_id="42")

    assert raised.value.message.endswith(f": DeployedModel 42 not found on Endpoint {tuned.endpoint_name}.")


def test_undeploy_of_an_undeployed_model_raises_not_found(endpoints, undeployed):
    with pytest.raises(gexc.NotFound):
        endpoints.undeploy_model(endpoint=undeployed.endpoint_name, deployed_model_id=undeployed.id)


def test_delete_of_an_endpoint_with_a_deployed_model_raises_failed_precondition(endpoints, tuned):
    with pytest.raises(gexc.BadRequest) as raised:
        endpoints.delete_endpoint(name=tuned.endpoint_name)

    assert error_status(raised.value) == "FAILED_PRECONDITION"
    assert endpoints.get_endpoint(name=tuned.endpoint_name).deployed_models[0].id == tuned.id


def test_delete_of_an_undeployed_endpoint_answers_a_done_operation(endpoints, undeployed):
    operation = endpoints.delete_endpoint(name=undeployed.endpoint_name)

    assert operation.done()
    assert isinstance(operation.metadata, v1.DeleteOperationMetadata)
    operation.result()  # google.protobuf.Empty; raises if the operation carried an error


def test_deleted_endpoint_is_not_found(endpoints, undeployed):
    endpoints.delete_endpoint(name=undeployed.endpoint_name).result()

    with pytest.raises(gexc.NotFound) as raised:
        endpoints.get_endpoint(name=undeployed.endpoint_name)

    assert raised.value.message.endswith(f": Endpoint {undeployed.endpoint_name} not found.")


def test_delete_of_a_deployed_model_raises_failed_precondition_naming_the_endpoint(models, tuned):
    with pytest.raises(gexc.BadRequest) as raised:
        models.delete_model(name=tuned.model_name)

    assert error_status(raised.value) == "FAILED_PRECONDITION"
    assert tuned.endpoint_name in raised.value.message


def test_deleted_model_is_not_found_with_or_without_its_version(models, undeployed):
    models.delete_model(name=undeployed.model_name).result()  # the name a job reports: models/ID@1

    for name in (undeployed.model_name, model_path(undeployed)):
        with pytest.raises(gexc.NotFound):
            models.get_model(name=name)


def test_delete_of_a_model_removes_its_weights(models, undeployed):
    models.delete_model(name=model_path(undeployed)).result()

    assert not Path(undeployed.model_dir).exists()


def test_the_undeployed_endpoint_stays_when_its_model_is_deleted(endpoints, models, undeployed):
    models.delete_model(name=undeployed.model_name).result()

    assert endpoints.get_endpoint(name=undeployed.endpoint_name).name == undeployed.endpoint_name


def test_generate_content_on_an_undeployed_endpoint_raises_failed_precondition(emulator, undeployed):
    with pytest.raises(gexc.BadRequest) as raised:
        client(emulator, v1.PredictionServiceClient).generate_content(model=undeployed.endpoint_name,
                                                                      contents=PROMPT)

    assert error_status(raised.value) == "FAILED_PRECONDITION"
    assert f"Endpoint {undeployed.endpoint_name} has no deployed model" in raised.value.message


def test_generate_content_on_a_deleted_endpoint_raises_not_found(emulator, endpoints, undeployed):
    endpoints.delete_endpoint(name=undeployed.endpoint_name).result()

    with pytest.raises(gexc.NotFound):
        client(emulator, v1.PredictionServiceClient).generate_content(model=undeployed.endpoint_name,
                                                                      contents=PROMPT)


def test_the_operations_client_polls_the_operation_done(endpoints, tuned):
    name = endpoints.undeploy_model(endpoint=tuned.endpoint_name, deployed_model_id=tuned.id).operation.name

    polled = endpoints.transport.operations_client.get_operation(name)  # what Operation.result() polls

    assert (polled.name, polled.done) == (name, True)


def test_v1beta1_clients_undeploy_and_delete(emulator, tuned):
    beta_endpoints = client(emulator, v1beta1.EndpointServiceClient)
    beta_models = client(emulator, v1beta1.ModelServiceClient)

    beta_endpoints.undeploy_model(endpoint=tuned.endpoint_name, deployed_model_id=tuned.id).result()
    beta_endpoints.delete_endpoint(name=tuned.endpoint_name).result()
    beta_models.delete_model(name=tuned.model_name).result()

    with pytest.raises(gexc.NotFound):
        beta_models.get_model(name=tuned.model_name)


@pytest.fixture
def succeeded_endpoint(emulator: RunningEmulator, sample_uris) -> str:
    """The endpoint of a job that really trained (and so really serves)."""
    body = {"baseModel": "translation-llm-002", "supervisedTuningSpec": {"trainingDatasetUri": sample_uris[0]}}
    created = call(emulator, "POST", f"v1/{PARENT}/tuningJobs", json=body).json()
    job = wait_until_ended(lambda: call(emulator, "GET", f"v1/{created['name']}").json())
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    return job["tunedModel"]["endpoint"]


def test_the_endpoint_of_a_succeeded_job_stops_serving_once_undeployed(emulator, endpoints, succeeded_endpoint):
    prediction = client(emulator, v1.PredictionServiceClient)
    assert prediction.generate_content(model=succeeded_endpoint, contents=PROMPT).candidates
    [deployed] = endpoints.get_endpoint(name=succeeded_endpoint).deployed_models

    endpoints.undeploy_model(endpoint=succeeded_endpoint, deployed_model_id=deployed.id).result()

    with pytest.raises(gexc.BadRequest) as raised:
        prediction.generate_content(model=succeeded_endpoint, contents=PROMPT)
    assert error_status(raised.value) == "FAILED_PRECONDITION"


# --- raw HTTP: operation bodies and error envelopes -------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_undeploy_answers_a_done_operation_under_the_endpoint_with_the_version_types(emulator, tuned, version):
    response = call(emulator, "POST", f"{version}/{tuned.endpoint_name}:undeployModel",
                    json={"deployedModelId": tuned.id})

    assert response.status_code == 200, response.text
    operation = response.json()
    assert re.fullmatch(rf"{tuned.endpoint_name}/operations/\d+", operation["name"])
    assert operation["done"] is True
    assert operation["metadata"]["@type"] == (f"type.googleapis.com/google.cloud.aiplatform.{version}."
                                              "UndeployModelOperationMetadata")
    assert operation["response"] == {"@type": f"type.googleapis.com/google.cloud.aiplatform.{version}."
                                              "UndeployModelResponse"}


def test_delete_model_answers_a_done_operation_under_the_model(emulator, undeployed):
    operation = call(emulator, "DELETE", f"v1/{undeployed.model_name}").json()

    assert re.fullmatch(rf"{model_path(undeployed)}/operations/\d+", operation["name"])
    assert operation["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert operation["metadata"]["@type"] == "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata"


@pytest.mark.parametrize("prefix", ["ui", "v1", "v1beta1"])
def test_the_operation_is_served_under_each_prefix(emulator, tuned, prefix):
    operation = call(emulator, "POST", f"v1/{tuned.endpoint_name}:undeployModel",
                     json={"deployedModelId": tuned.id}).json()

    response = call(emulator, "GET", f"{prefix}/{operation['name']}")

    assert (response.status_code, response.json()) == (200, operation)


def test_wait_on_an_operation_answers_it_done(emulator, undeployed):
    operation = call(emulator, "DELETE", f"v1/{undeployed.endpoint_name}").json()

    response = call(emulator, "POST", f"v1/{operation['name']}:wait", json={"timeout": "5s"})

    assert (response.status_code, response.json()) == (200, operation)


def test_get_of_an_unknown_operation_answers_404(emulator, tuned):
    name = f"{tuned.endpoint_name}/operations/7"

    assert_error(call(emulator, "GET", f"v1/{name}"), 404, "NOT_FOUND", f"Operation {name} not found.")


def test_delete_of_an_endpoint_with_a_deployed_model_answers_400_failed_precondition(emulator, tuned):
    assert_error(call(emulator, "DELETE", f"v1/{tuned.endpoint_name}"), 400, "FAILED_PRECONDITION",
                 f"Endpoint {tuned.endpoint_name} has deployed models (DeployedModel {tuned.id}). Undeploy all of "
                 "them before deleting the Endpoint.")


def test_delete_of_a_deployed_model_answers_400_failed_precondition(emulator, tuned):
    assert_error(call(emulator, "DELETE", f"v1/{tuned.model_name}"), 400, "FAILED_PRECONDITION",
                 f"The Model {model_path(tuned)} is deployed or being deployed at the following Endpoint(s): "
                 f"{tuned.endpoint_name}. Undeploy the model from them before deleting it.")


def test_delete_of_a_deleted_endpoint_answers_404(emulator, undeployed):
    call(emulator, "DELETE", f"v1/{undeployed.endpoint_name}").raise_for_status()

    assert_error(call(emulator, "DELETE", f"v1/{undeployed.endpoint_name}"), 404, "NOT_FOUND",
                 f"Endpoint {undeployed.endpoint_name} not found.")


def test_undeploy_without_a_deployed_model_id_answers_400_invalid_argument(emulator, tuned):
    response = call(emulator, "POST", f"v1/{tuned.endpoint_name}:undeployModel", json={})

    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert response.json()["error"]["message"].startswith("deployedModelId is required")


def test_undeploy_with_a_misspelled_field_answers_400_invalid_argument(emulator, tuned):
    response = call(emulator, "POST", f"v1/{tuned.endpoint_name}:undeployModel", json={"deployedModelID": tuned.id})

    assert response.status_code == 400
    assert 'no field named "deployedModelID"' in response.json()["error"]["message"]


def test_get_of_a_model_version_that_does_not_exist_answers_404(emulator, tuned):
    assert call(emulator, "GET", f"v1/{model_path(tuned)}@2").status_code == 404


def test_reset_forgets_operations(emulator, tuned):
    operation = call(emulator, "POST", f"v1/{tuned.endpoint_name}:undeployModel",
                     json={"deployedModelId": tuned.id}).json()

    control(emulator, "POST", "reset").raise_for_status()

    assert call(emulator, "GET", f"v1/{operation['name']}").status_code == 404


# --- state survives a restart -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Restarted:
    emulator: RunningEmulator
    undeployed: TunedModelRecord  # undeployed only
    deleted: TunedModelRecord  # undeployed, endpoint and model deleted
    operation: dict[str, Any]  # the model delete's


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restarted]:
    data_dir = tmp_path_factory.mktemp("cleanup-restart")
    with serve_in_thread(emulator_settings(data_dir)) as first:
        undeployed, deleted = tuned_model(first, "1"), tuned_model(first, "2")
        for record in (undeployed, deleted):
            call(first, "POST", f"v1/{record.endpoint_name}:undeployModel",
                 json={"deployedModelId": record.id}).raise_for_status()
        call(first, "DELETE", f"v1/{deleted.endpoint_name}").raise_for_status()
        operation = call(first, "DELETE", f"v1/{deleted.model_name}").json()
    with serve_in_thread(emulator_settings(data_dir)) as second:
        yield Restarted(second, undeployed, deleted, operation)


def test_an_undeployed_endpoint_stays_undeployed_after_restart(restarted):
    endpoint = call(restarted.emulator, "GET", f"v1/{restarted.undeployed.endpoint_name}").json()

    assert "deployedModels" not in endpoint and endpoint["name"] == restarted.undeployed.endpoint_name


def test_a_deleted_endpoint_stays_deleted_after_restart(restarted):
    assert call(restarted.emulator, "GET", f"v1/{restarted.deleted.endpoint_name}").status_code == 404


def test_a_deleted_model_stays_deleted_after_restart(restarted):
    assert call(restarted.emulator, "GET", f"v1/{restarted.deleted.model_name}").status_code == 404


def test_operations_survive_restart(restarted):
    response = call(restarted.emulator, "GET", f"v1/{restarted.operation['name']}")

    assert (response.status_code, response.json()) == (200, restarted.operation)
