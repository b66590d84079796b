"""gRPC server reflection (grpc.reflection.v1 and v1alpha) against a real
`weft serve`, with the grpcio-reflection client: list the services, fetch
file descriptors, build message classes from them and call a method, and the
protocol's error answers."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import weft_helpers as wh

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
REFLECTION = {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}


@pytest.fixture(scope="module")
def reflection_db(chan):
    return ProtoReflectionDescriptorDatabase(chan)


def v1_exchange(chan, requests: list) -> list:
    """Sends v1 requests on one stream; v1 and v1alpha messages are identical
    on the wire, so the v1alpha Python classes encode and decode them."""
    call = chan.stream_stream(
        V1_METHOD,
        request_serializer=alpha.ServerReflectionRequest.SerializeToString,
        response_deserializer=alpha.ServerReflectionResponse.FromString,
    )
    return list(call(iter(requests), timeout=10))


def test_lists_every_registered_service(reflection_db, protos):
    services = set(reflection_db.get_services())
    expected = set(wh.v1_services(protos)) | {"grpc.health.v1.Health"} | REFLECTION
    assert expected <= services, expected - services
    # The module's server runs the production configuration: no test service.
    assert wh.ECHO_SERVICE not in services, services


def test_descriptors_match_the_protos(reflection_db, protos):
    pool = descriptor_pool.DescriptorPool(reflection_db)
    for name, local in wh.v1_services(protos).items():
        remote = pool.FindServiceByName(name)
        assert [m.name for m in remote.methods] == [m.name for m in local.methods], name
        for rm, lm in zip(remote.methods, local.methods):
            assert rm.input_type.full_name == lm.input_type.full_name, (name, rm.name)
            assert rm.output_type.full_name == lm.output_type.full_name, (name, rm.name)
            assert rm.server_streaming == lm.server_streaming and rm.client_streaming == lm.client_streaming
    execution = pool.FindMessageTypeByName("weft.v1.Execution")
    assert {"cost", "cost_breakdown", "trace_id"} <= set(execution.fields_by_name)


def test_file_by_name_comes_with_its_imports(reflection_db):
    file = reflection_db.FindFileByName("weft/v1/executions.proto")
    assert file.package == "weft.v1"
    assert "google/protobuf/struct.proto" in file.dependency
    # The import itself resolves from the server too.
    assert reflection_db.FindFileByName("google/protobuf/struct.proto").package == "google.protobuf"


def test_call_with_reflected_types(reflection_db, chan):
    """What grpcurl does: build the request from reflected descriptors and call."""
    pool = descriptor_pool.DescriptorPool(reflection_db)
    method = pool.FindMethodByName("weft.v1.UserService.Login")
    request_cls = GetMessageClass(method.input_type)
    response_cls = GetMessageClass(method.output_type)
    call = chan.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    with pytest.raises(grpc.RpcError) as err:
        call(request_cls(email="nobody@example.com", password="wrong password"), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, err.value


def test_v1_protocol_answers_in_order_with_errors(chan):
    responses = v1_exchange(chan, [
        alpha.ServerReflectionRequest(list_services=""),
        alpha.ServerReflectionRequest(file_containing_symbol="weft.v1.WorkflowService.CreateWorkflow"),
        alpha.ServerReflectionRequest(file_containing_symbol="weft.v1.NoSuchThing"),
        alpha.ServerReflectionRequest(file_by_filename="no/such.proto"),
        alpha.ServerReflectionRequest(file_containing_symbol=".weft.v1.Execution.Status"),
        alpha.ServerReflectionRequest(all_extension_numbers_of_type="weft.v1.Execution"),
        alpha.ServerReflectionRequest(),
    ])
    assert len(responses) == 7
    listed = {s.name for s in responses[0].list_services_response.service}
    assert REFLECTION <= listed and "weft.v1.WorkflowService" in listed

    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in responses[1].file_descriptor_response.file_descriptor_proto]
    assert files[0].name == "weft/v1/workflows.proto"
    names = {f.name for f in files}
    # Every import of every returned file is returned too.
    assert all(dep in names for f in files for dep in f.dependency), names
    assert responses[1].original_request.file_containing_symbol == "weft.v1.WorkflowService.CreateWorkflow"

    for r, what in ((responses[2], "weft.v1.NoSuchThing"), (responses[3], "no/such.proto")):
        assert r.WhichOneof("message_response") == "error_response"
        assert r.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
        assert what in r.error_response.error_message

    nested = descriptor_pb2.FileDescriptorProto.FromString(responses[4].file_descriptor_response.file_descriptor_proto[0])
    assert nested.name == "weft/v1/executions.proto"
    assert responses[5].all_extension_numbers_response.base_type_name == "weft.v1.Execution"
    assert list(responses[5].all_extension_numbers_response.extension_number) == []
    assert responses[6].error_response.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_reflection_needs_no_token(chan):
    # Like health, reflection describes the API only; calls still need a token.
    assert v1_exchange(chan, [alpha.ServerReflectionRequest(list_services="*")])[0].list_services_response.service
