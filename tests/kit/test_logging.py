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
