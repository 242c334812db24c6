"""Logs never carry a CURP in clear, nor a bearer token."""

from __future__ import annotations

import pytest
import structlog

from salud.kit.logging import configure_logging, redact


def test_redact_masks_curps_and_tokens() -> None:
    text = "lectura de PABG161007HBCRLST3 con Authorization: Bearer eyJhbGciOi.x.y"
    out = redact(text)
    assert "PABG161007HBCRLST3" not in out
    assert out.startswith("lectura de PABG**************")
    assert "eyJhbGciOi" not in out


def test_structured_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=True)
    structlog.get_logger("prueba").info(
        "acceso", curp="MAPE900517MHGRRL05", detail="token Bearer abc.def.ghi"
    )
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert "MAPE900517MHGRRL05" not in err
    assert "abc.def.ghi" not in err
    assert "MAPE" in err


def test_server_logs_and_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """The server's own loggers (uvicorn's, with handlers of their own) and a traceback that
    quotes values (a database error, say) are masked too, as are structlog's exceptions."""
    import io
    import logging

    stream = io.StringIO()
    server = logging.getLogger("uvicorn.error")
    handler = logging.StreamHandler(stream)
    server.addHandler(handler)
    try:
        configure_logging("INFO")
        try:
            raise ValueError("fila GODE561231HDFRRN09 con Bearer abc.def.ghi")
        except ValueError:
            server.exception("falló la lectura de %s", "MAPE900517MHGRRL05")
            structlog.get_logger("prueba").exception("falló", curp="MAPE900517MHGRRL05")
    finally:
        server.removeHandler(handler)
    captured = capsys.readouterr()
    text = stream.getvalue() + captured.err + captured.out
    assert "ValueError" in stream.getvalue()
    assert "falló" in captured.err + captured.out
    for secret in ("GODE561231HDFRRN09", "MAPE900517MHGRRL05", "abc.def.ghi"):
        assert secret not in text, secret


async def test_database_errors_do_not_quote_the_values() -> None:
    """A failed statement's error (what a traceback shows) names the statement, not the
    values it carried."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from salud.storage.engine import create_engine

    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (curp TEXT UNIQUE)"))
            row = {"curp": "GODE561231HDFRRN09"}
            await conn.execute(text("INSERT INTO t VALUES (:curp)"), row)
            with pytest.raises(IntegrityError) as failed:
                await conn.execute(text("INSERT INTO t VALUES (:curp)"), row)
    finally:
        await engine.dispose()
    assert "INSERT INTO t" in str(failed.value)
    assert "GODE561231HDFRRN09" not in str(failed.value)


def test_the_command_line_logs_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Its stdout carries data (an NDJSON file, a client's secret): logs go to stderr, the
    one of the moment (a logger made before stderr was redirected follows it)."""
    log = structlog.get_logger("prueba.cli")
    configure_logging("INFO", to_stderr=True)
    log.info("aviso", curp="MAPE900517MHGRRL05")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "MAPE**************" in captured.err
    assert "MAPE900517MHGRRL05" not in captured.err
