"""Passive delivery as a declared output: built from the configuration, started and stopped
by the service, validated at start (a bad target is marked down, the others go on)."""

from __future__ import annotations

from pathlib import Path

from esbridge.config import load_settings
from esbridge.listeners import ResultListener
from esbridge.passive import PassiveHub, passive_hub


def _settings(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "esbridge.yaml"
    path.write_text(body)
    return load_settings(path)


async def test_hub_start_marks_a_bad_target_down_and_keeps_the_others(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("secret\n")
    settings = _settings(
        tmp_path,
        "passive:\n"
        f"  - {{name: icinga, type: icinga2, url: 'http://127.0.0.1:9', username: u,"
        f" password_file: '{password}'}}\n"
        f"  - {{name: nagios, type: nagios, command_file: '{tmp_path}/cmd'}}\n"
        f"  - {{name: off, type: nagios, command_file: '{tmp_path}/x', enabled: false}}\n",
    )
    password.unlink()  # gone after the configuration was read
    hub = passive_hub(settings.passive, None)
    assert isinstance(hub, PassiveHub)
    listener: ResultListener = hub  # the declared interface the service uses
    await listener.start()
    try:
        status = {s["name"]: s for s in listener.status()}
        assert sorted(status) == ["icinga", "nagios"]  # a disabled target is not built
        assert status["icinga"]["up"] is False
        assert "password_file" in status["icinga"]["last_error"]
        assert status["nagios"]["up"] is None  # nothing tried yet, nothing wrong
        assert all(t.tasks for t in hub.targets)  # workers run for both
    finally:
        await listener.stop(1.0)
    assert not any(t.tasks for t in hub.targets)


def test_no_enabled_target_means_no_output(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        f"passive:\n  - {{name: n, type: nagios, command_file: '{tmp_path}/c', enabled: false}}\n",
    )
    assert passive_hub(settings.passive, None) is None
