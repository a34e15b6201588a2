"""Conformance: Google's official Python clients against the emulator binary.

If `google-cloud-bigquery-storage` (the handwritten `AppendRowsStream` writer)
and `google-cloud-bigquery` (REST) work against `kinesis-bigquery emulator`
exactly as against BigQuery, the emulator speaks the service's wire contract
and our own client's tests against it mean something (issue 2, acceptance).

Run by `scripts/test` with `KBQ_BIN` pointing at the built binary.
"""

import os
import pathlib
import queue
import re
import subprocess
import threading
import uuid
from datetime import datetime, timezone

import grpc
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, bigquery_storage_v1
from google.cloud.bigquery_storage_v1 import types, writer
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
    BigQueryWriteGrpcTransport,
)
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = "conformance-project"
DATASET = "conformance"
READY = re.compile(r"emulator ready grpc=(\S+) rest=(\S+)")
TIMEOUT = 30  # seconds for any one call; everything is local

# The table every test writes, in the `bq` CLI's JSON schema format: the
# fields of the sample events in tests/fixtures.
SCHEMA_JSON = """[
  {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
  {"name": "type", "type": "STRING", "mode": "NULLABLE"},
  {"name": "user_id", "type": "INTEGER", "mode": "NULLABLE"},
  {"name": "ts", "type": "TIMESTAMP", "mode": "NULLABLE"},
  {"name": "tags", "type": "STRING", "mode": "REPEATED"},
  {"name": "lat", "type": "FLOAT", "mode": "NULLABLE"}
]"""
SCHEMA = [
    bigquery.SchemaField("event_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("type", "STRING"),
    bigquery.SchemaField("user_id", "INTEGER"),
    bigquery.SchemaField("ts", "TIMESTAMP"),
    bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
    bigquery.SchemaField("lat", "FLOAT"),
]


def emulator_binary() -> str:
    if "KBQ_BIN" in os.environ:
        return os.environ["KBQ_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "kinesis-bigquery")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The emulator binary on ports it picks itself; yields (grpc, rest) URLs."""
    binary = emulator_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no emulator binary at {binary}: run scripts/test (or cargo test --no-run)")
    tmp = tmp_path_factory.mktemp("emulator")
    schema = tmp / "events.json"
    schema.write_text(SCHEMA_JSON)
    stderr = open(tmp / "stderr.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            "emulator",
            "--grpc",
            "127.0.0.1:0",
            "--rest",
            "127.0.0.1:0",
            "--table",
            f"{PROJECT}.{DATASET}.events={schema}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail("emulator printed no ready line within %ss" % TIMEOUT)
            if line is None:
                pytest.fail(
                    "emulator exited before it was ready:\n"
                    + (tmp / "stderr.log").read_text(errors="replace")
                )
            match = READY.search(line)
            if match:
                yield match.group(1), match.group(2)
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr.close()


@pytest.fixture(scope="module")
def write_client(emulator):
    grpc_url, _ = emulator
    channel = grpc.insecure_channel(grpc_url.removeprefix("http://"))
    transport = BigQueryWriteGrpcTransport(
        channel=channel, credentials=AnonymousCredentials()
    )
    yield bigquery_storage_v1.BigQueryWriteClient(transport=transport)
    channel.close()


@pytest.fixture(scope="module")
def bq(emulator):
    _, rest_url = emulator
    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": rest_url},
    )


@pytest.fixture
def table(bq):
    """A fresh table (created through REST tables.insert); yields its path."""
    table_id = f"{PROJECT}.{DATASET}.t_{uuid.uuid4().hex}"
    bq.create_table(bigquery.Table(table_id, schema=SCHEMA))
    return f"projects/{PROJECT}/datasets/{DATASET}/tables/{table_id.split('.')[-1]}"


# --- proto rows, with the descriptor built at run time (no protoc) -----------

def _event_descriptor() -> descriptor_pb2.DescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto
    message = descriptor_pb2.DescriptorProto(name="Event")
    for number, (name, type_, label) in enumerate(
        [
            ("event_id", F.TYPE_STRING, F.LABEL_REQUIRED),
            ("type", F.TYPE_STRING, F.LABEL_OPTIONAL),
            ("user_id", F.TYPE_INT64, F.LABEL_OPTIONAL),
            # TIMESTAMP as int64 microseconds since the epoch.
            ("ts", F.TYPE_INT64, F.LABEL_OPTIONAL),
            ("tags", F.TYPE_STRING, F.LABEL_REPEATED),
            ("lat", F.TYPE_DOUBLE, F.LABEL_OPTIONAL),
        ],
        start=1,
    ):
        message.field.add(name=name, number=number, type=type_, label=label)
    return message


EVENT_DESCRIPTOR = _event_descriptor()


def _event_class():
    file = descriptor_pb2.FileDescriptorProto(
        name="conformance_event.proto", package="conformance", syntax="proto2"
    )
    file.message_type.add().CopyFrom(EVENT_DESCRIPTOR)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("conformance.Event")
    )


Event = _event_class()

T0 = datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=timezone.utc)
T0_MICROS = (int(T0.replace(microsecond=0).timestamp()) * 1_000_000) + T0.microsecond


def event(i: int, **overrides) -> dict:
    """The i-th test event as the table should return it."""
    row = {
        "event_id": f"e{i}",
        "type": "click" if i % 2 else "view",
        "user_id": 1000 + i,
        "ts": T0_MICROS + i,
        "tags": [f"t{j}" for j in range(i % 3)],
        "lat": None if i % 4 == 3 else 52.5 + i / 8,
    }
    row.update(overrides)
    return row


def proto_rows(rows) -> types.ProtoRows:
    out = types.ProtoRows()
    for row in rows:
        message = Event(**{k: v for k, v in row.items() if v is not None})
        out.serialized_rows.append(message.SerializeToString())
    return out


def open_writer(client, stream_name: str) -> writer.AppendRowsStream:
    template = types.AppendRowsRequest(write_stream=stream_name)
    proto_data = types.AppendRowsRequest.ProtoData()
    proto_data.writer_schema = types.ProtoSchema(proto_descriptor=EVENT_DESCRIPTOR)
    template.proto_rows = proto_data
    return writer.AppendRowsStream(client, template)


def append(stream: writer.AppendRowsStream, rows, offset=None):
    """Sends one AppendRows request; returns the future of its response."""
    request = types.AppendRowsRequest()
    if offset is not None:
        request.offset = offset
    proto_data = types.AppendRowsRequest.ProtoData()
    proto_data.rows = proto_rows(rows)
    request.proto_rows = proto_data
    return stream.send(request)


def read_back(bq, table_path: str) -> list:
    """Rows through REST tabledata.list, as dicts in event order."""
    table_id = ".".join(table_path.split("/")[1::2])
    rows = [dict(row.items()) for row in bq.list_rows(table_id, timeout=TIMEOUT)]
    return sorted(rows, key=lambda r: int(r["event_id"][1:]))


def expected(rows) -> list:
    """What google-cloud-bigquery returns for the rows we wrote."""
    out = []
    for row in rows:
        row = dict(row)
        row["ts"] = datetime.fromtimestamp(row["ts"] // 1_000_000, timezone.utc).replace(
            microsecond=row["ts"] % 1_000_000
        )
        out.append(row)
    return out


# --- the tests ---------------------------------------------------------------

def test_get_table_reports_the_schema_file(bq):
    table = bq.get_table(f"{PROJECT}.{DATASET}.events", timeout=TIMEOUT)
    assert [(f.name, f.field_type, f.mode) for f in table.schema] == [
        ("event_id", "STRING", "REQUIRED"),
        ("type", "STRING", "NULLABLE"),
        ("user_id", "INTEGER", "NULLABLE"),
        ("ts", "TIMESTAMP", "NULLABLE"),
        ("tags", "STRING", "REPEATED"),
        ("lat", "FLOAT", "NULLABLE"),
    ]
    assert table.num_rows == 0


def test_default_stream_rows_are_visible_once_acked(write_client, bq, table):
    stream = open_writer(write_client, f"{table}/streams/_default")
    try:
        first = append(stream, [event(0), event(1)]).result(timeout=TIMEOUT)
        second = append(stream, [event(2), event(3)]).result(timeout=TIMEOUT)
    finally:
        stream.close()
    for response in (first, second):
        assert not response.error.code
        assert not response.row_errors
        # No offsets on _default: none comes back.
        assert "offset" not in response.append_result
    assert read_back(bq, table) == expected([event(i) for i in range(4)])
    got = bq.get_table(".".join(table.split("/")[1::2]), timeout=TIMEOUT)
    assert got.num_rows == 4


def test_committed_stream_with_offsets_and_a_retried_offset(write_client, bq, table):
    ws = write_client.create_write_stream(
        parent=table, write_stream=types.WriteStream(type_=types.WriteStream.Type.COMMITTED)
    )
    assert ws.name.startswith(f"{table}/streams/")
    assert ws.type_ == types.WriteStream.Type.COMMITTED
    stream = open_writer(write_client, ws.name)
    try:
        r0 = append(stream, [event(0), event(1)], offset=0).result(timeout=TIMEOUT)
        assert r0.append_result.offset == 0
        r2 = append(stream, [event(2)], offset=2).result(timeout=TIMEOUT)
        assert r2.append_result.offset == 2

        # The retry of an append that landed: ALREADY_EXISTS, rows not written twice.
        with pytest.raises(exceptions.AlreadyExists):
            append(stream, [event(2)], offset=2).result(timeout=TIMEOUT)
        # A gap: OUT_OF_RANGE, nothing written.
        with pytest.raises(exceptions.OutOfRange):
            append(stream, [event(9)], offset=9).result(timeout=TIMEOUT)

        # Committed rows are visible as soon as they are acked.
        assert read_back(bq, table) == expected([event(0), event(1), event(2)])

        r3 = append(stream, [event(3)], offset=3).result(timeout=TIMEOUT)
        assert r3.append_result.offset == 3
    finally:
        stream.close()

    finalized = write_client.finalize_write_stream(name=ws.name)
    assert finalized.row_count == 4
    assert read_back(bq, table) == expected([event(i) for i in range(4)])


def test_pending_stream_is_invisible_until_batch_commit(write_client, bq, table):
    ws = write_client.create_write_stream(
        parent=table, write_stream=types.WriteStream(type_=types.WriteStream.Type.PENDING)
    )
    stream = open_writer(write_client, ws.name)
    try:
        append(stream, [event(0), event(1)], offset=0).result(timeout=TIMEOUT)
        append(stream, [event(2)], offset=2).result(timeout=TIMEOUT)
    finally:
        stream.close()
    assert read_back(bq, table) == []

    finalized = write_client.finalize_write_stream(name=ws.name)
    assert finalized.row_count == 3
    assert read_back(bq, table) == []

    committed = write_client.batch_commit_write_streams(
        types.BatchCommitWriteStreamsRequest(parent=table, write_streams=[ws.name])
    )
    assert not committed.stream_errors
    assert "commit_time" in committed
    assert read_back(bq, table) == expected([event(0), event(1), event(2)])

    after = write_client.get_write_stream(name=ws.name)
    assert "commit_time" in after


def test_a_bad_row_rejects_the_request_with_row_errors(write_client, bq, table):
    good = Event(event_id="e0").SerializeToString()
    # REQUIRED event_id left out (proto2 allows serializing it partially).
    bad = Event(user_id=7).SerializePartialToString()
    request = types.AppendRowsRequest()
    proto_data = types.AppendRowsRequest.ProtoData()
    proto_data.rows = types.ProtoRows(serialized_rows=[good, bad, good])
    request.proto_rows = proto_data
    stream = open_writer(write_client, f"{table}/streams/_default")
    try:
        with pytest.raises(exceptions.InvalidArgument) as failed:
            stream.send(request).result(timeout=TIMEOUT)
        # The connection stays usable after an in-stream error.
        ok = append(stream, [event(1)]).result(timeout=TIMEOUT)
        assert not ok.error.code
    finally:
        stream.close()
    response = failed.value.response
    assert [e.index for e in response.row_errors] == [1]
    assert response.row_errors[0].code == types.RowError.RowErrorCode.FIELDS_ERROR
    # No row of the failed request was written.
    assert read_back(bq, table) == expected([event(1)])
