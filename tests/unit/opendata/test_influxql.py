"""The InfluxQL client: answers parsed per statement, errors raised, 1.x and 2.x/3.x auth."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr

from stationflow.settings import CommonSettings, InfluxDialect
from stationview.influxql import InfluxQL, InfluxQLError, Series, parse_results, quote_ident, quote_string

ANSWER = {
    "results": [
        {
            "statement_id": 0,
            "series": [
                {
                    "name": "aqi",
                    "tags": {"station": "a"},
                    "columns": ["time", "aqi"],
                    "values": [[1, 50], [2, 60]],
                },
                {"name": "aqi", "tags": {"station": "b"}, "columns": ["time", "aqi"], "values": [[3, 70]]},
            ],
        },
        {"statement_id": 1},
    ]
}


def test_parse_results_per_statement() -> None:
    first, second = parse_results(ANSWER)
    assert [s.tags["station"] for s in first] == ["a", "b"]
    assert first[0].rows == [{"time": 1, "aqi": 50}, {"time": 2, "aqi": 60}]
    assert second == []


@pytest.mark.parametrize(
    "body", [{"error": "bad"}, {"results": [{"statement_id": 0, "error": "database not found: x"}]}]
)
def test_errors_raise(body: dict[str, object]) -> None:
    with pytest.raises(InfluxQLError):
        parse_results(body)


def test_quoting() -> None:
    assert quote_string("a'b\\c") == "'a\\'b\\\\c'"
    assert quote_ident('we"ird') == '"we\\"ird"'


def _sent(
    settings: CommonSettings, status: int = 200
) -> tuple[httpx.Request, list[list[Series]] | Exception]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=ANSWER if status == 200 else {"error": "unauthorized"})

    async def run() -> list[list[Series]] | Exception:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            q = InfluxQL.from_settings(settings, client=client)
            try:
                return await q.query_many(["SELECT 1", "SELECT 2"])
            except InfluxQLError as exc:
                return exc

    result = asyncio.run(run())
    return seen[0], result


def test_v1_database_and_user_password() -> None:
    request, result = _sent(
        CommonSettings(influx_url="http://db:8086/", influx_db="sf", influx_token=SecretStr("u:p"))
    )
    assert request.url.path == "/query"
    params = dict(request.url.params)
    assert params["db"] == "sf" and params["epoch"] == "s" and (params["u"], params["p"]) == ("u", "p")
    assert params["q"] == "SELECT 1;\nSELECT 2"
    assert isinstance(result, list) and len(result) == 2


def test_v2_bucket_and_token_and_http_errors() -> None:
    settings = CommonSettings(
        influx_dialect=InfluxDialect.V2, influx_bucket="bk", influx_token=SecretStr("tok")
    )
    request, _ = _sent(settings)
    assert request.url.params["db"] == "bk" and "u" not in request.url.params
    assert request.headers["Authorization"] == "Token tok"
    _, failed = _sent(settings, status=401)
    assert isinstance(failed, InfluxQLError) and "401" in str(failed)
