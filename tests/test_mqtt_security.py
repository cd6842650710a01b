"""Security with real processes: mqtts with a CA, hostname verification and a password file on mosquitto;
credentials never printed or published."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipelines.bench.mosquitto import free_port
from streamer.errors import EXIT_NOT_OPENED, EXIT_UNDELIVERED

from .analyzer_run import run_streamer, start_streamer, subscribe

PASSWORD = "Tr0ub4dor-and-3"


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for DNS name ``localhost`` only (so ``127.0.0.1`` fails verification)."""
    paths = {name: folder / f"{name}.pem" for name in ("ca", "ca_key", "server", "server_key")}
    csr, ext = folder / "server.csr", folder / "server.ext"
    ext.write_text("subjectAltName = DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=streamer test CA",
            "-keyout", str(paths["ca_key"]), "-out", str(paths["ca"]))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(paths["server_key"]),
            "-out", str(csr))  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey", str(paths["ca_key"]),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(paths["server"]))  # fmt: skip
    return paths


def make_client_certificate(folder: Path, certs: dict[str, Path]) -> tuple[Path, Path]:
    cert, key, csr = folder / "client.pem", folder / "client_key.pem", folder / "client.csr"
    for args in (
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=streamer", "-keyout", str(key), "-out", str(csr)],
        ["x509", "-req", "-in", str(csr), "-CA", str(certs["ca"]), "-CAkey", str(certs["ca_key"]), "-CAcreateserial",
         "-days", "2", "-out", str(cert)],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_broker(tmp_path: Path, mqtt_broker: Any) -> tuple[Any, int, dict[str, Path]]:
    certs = make_certificates(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "alice", PASSWORD], check=True, timeout=30)
    port = free_port()
    broker = mqtt_broker(extra_config=[
        "allow_anonymous false", f"password_file {passwd}", f"listener {port} 127.0.0.1",
        f"cafile {certs['ca']}", f"certfile {certs['server']}", f"keyfile {certs['server_key']}",
    ])  # fmt: skip
    return broker, port, certs


def config(tmp_path: Path, url: str, ca: Path, password: str = PASSWORD) -> Path:
    (tmp_path / "secret").write_text(password + "\n")
    path = tmp_path / "streamer.toml"
    path.write_text(f'[mqtt]\nurl = "{url}"\nprefix = "test"\npassword_file = "{tmp_path / "secret"}"\n'
                    f'ca_file = "{ca}"\nstats_interval = 0.5\n')  # fmt: skip
    return path


async def test_mqtts_with_a_ca_and_a_password_file(tmp_path: Path, tls_broker: Any) -> None:
    _, port, certs = tls_broker
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    async with subscribe("localhost", port, username="alice", password=PASSWORD, tls_context=context) as sub:
        code, out, err = await run_streamer(
            "synthetic:?realtime=0&duration=4&events=av@2", "--config",
            str(config(tmp_path, f"mqtts://alice@localhost:{port}", certs["ca"])), "-v",
        )  # fmt: skip
        await sub.wait_for("test/status", "offline", within=10)
    assert code == 0, err
    topics = [m.topic for m in sub.messages]
    assert topics.count("test/synthetic/events") == 2 and "test/stats" in topics
    payloads = b"".join(m.payload for m in sub.messages)
    assert PASSWORD not in out + err and PASSWORD.encode() not in payloads


async def test_hostname_verification_is_on_by_default(tmp_path: Path, tls_broker: Any) -> None:
    _, port, certs = tls_broker  # the certificate names localhost, not 127.0.0.1
    code, _, err = await run_streamer(
        "synthetic:?realtime=0&duration=2&events=av@1", "--config",
        str(config(tmp_path, f"mqtts://alice@127.0.0.1:{port}", certs["ca"])),
    )  # fmt: skip
    assert code == EXIT_UNDELIVERED, err
    assert "unreachable" in err and "certificate" in err.lower() and "not delivered" in err
    assert PASSWORD not in err


async def test_a_wrong_password_is_reported_not_printed(tmp_path: Path, tls_broker: Any) -> None:
    _, port, certs = tls_broker
    code, out, err = await run_streamer(
        "synthetic:?realtime=0&duration=2&events=av@1", "--config",
        str(config(tmp_path, f"mqtts://alice@localhost:{port}", certs["ca"], password="wrong-pass-123")),
    )  # fmt: skip
    assert code == EXIT_UNDELIVERED and "unreachable" in err and "not delivered" in err
    assert "wrong-pass-123" not in out + err


async def test_source_credentials_never_reach_logs_or_mqtt_and_a_broken_stream_stops_no_other(
    mqtt_broker: Any,
) -> None:
    broker = mqtt_broker()
    secret = "hunter2-secret"
    async with subscribe(broker.host, broker.port) as sub:
        proc = await start_streamer(
            "-v", "run", f"rtsp://admin:{secret}@127.0.0.1:{free_port()}/cam?token={secret}",
            "synthetic:?duration=0&events=av@1", "--mqtt", broker.url, "--prefix", "test", "--stats-interval", "0.5",
        )  # fmt: skip
        await sub.wait_for("test/synthetic/events", within=60)  # the broken stream stops no other
        await sub.wait_for("test/127_0_0_1_cam/status", "reconnecting", within=30)
        await asyncio.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            out, err = await proc.communicate()
    assert proc.returncode == EXIT_NOT_OPENED, err.decode()  # the broken stream never opened
    assert "rtsp://admin:***@127.0.0.1" in err.decode()
    everything = out + err + b"".join(m.payload for m in sub.messages)
    assert secret.encode() not in everything


def client_certificate_site(tmp_path: Path, mqtt_broker: Any, extra: str = "") -> tuple[Any, Path, Path, Path]:
    """A TLS broker that requires a client certificate, and a config (with ``extra`` lines) that gives one:
    the broker (its plain listener for subscribers), the config file, the client certificate and its key."""
    certs = make_certificates(tmp_path)
    cert, key = make_client_certificate(tmp_path, certs)
    port = free_port()
    broker = mqtt_broker(extra_config=[
        f"listener {port} 127.0.0.1", f"cafile {certs['ca']}", f"certfile {certs['server']}",
        f"keyfile {certs['server_key']}", "require_certificate true",
    ])  # fmt: skip
    path = tmp_path / "cert.toml"
    path.write_text(f'[mqtt]\nurl = "mqtts://localhost:{port}"\nprefix = "test"\nca_file = "{certs["ca"]}"\n'
                    f'cert_file = "{cert}"\nkey_file = "{key}"\n{extra}')  # fmt: skip
    return broker, path, cert, key


async def test_a_client_certificate_when_the_broker_requires_one(tmp_path: Path, mqtt_broker: Any) -> None:
    broker, path, cert, key = client_certificate_site(tmp_path, mqtt_broker)
    async with subscribe(broker.host, broker.port) as sub:  # the plain listener, same broker
        code, _, err = await run_streamer("synthetic:?realtime=0&duration=3&events=av@1", "--config", str(path))
        await sub.wait_for("test/status", "offline", within=10)
    assert code == 0, err
    assert [e["type"] for e in sub.events("synthetic")] == ["start", "end"]
    path.write_text(path.read_text().replace(f'cert_file = "{cert}"\nkey_file = "{key}"\n', ""))
    code, _, err = await run_streamer("synthetic:?realtime=0&duration=2&events=av@1", "--config", str(path))
    assert "certificate required" in err and "not delivered" in err  # without its certificate it is refused


async def test_demo_over_mqtts_subscribes_over_tls_too(tls_broker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's ``streamer demo --mqtt mqtts://...``: its broker probe used TLS but its subscriber did not, and
    the user got an ``aiomqtt.MqttError`` traceback. The CA comes as for any TLS client (``SSL_CERT_FILE``), the
    password from the environment."""
    _, port, certs = tls_broker
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca"]))
    monkeypatch.setenv("STREAMER_MQTT_PASSWORD", PASSWORD)
    proc = await start_streamer("demo", "--mqtt", f"mqtts://alice@localhost:{port}", "--duration", "6")
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert f"using the MQTT broker at mqtts://localhost:{port}" in text
    assert "done: 1 event(s) received over MQTT" in text and "Traceback" not in text


async def test_a_client_certificate_gone_at_a_reconnect_is_a_line_a_try_and_the_streams_go_on(
    tmp_path: Path, mqtt_broker: Any
) -> None:
    """The certificate was there at start-up, then is renamed and the broker restarts: each reconnect attempt is
    one error line naming the file (it used to raise outside MqttError and end every stream); once the file is
    back the publisher reconnects and delivers again, and the stream never stopped."""
    broker, path, cert, _ = client_certificate_site(tmp_path, mqtt_broker, "stats_interval = 0.5\n")
    proc = await start_streamer("run", "cam=synthetic:?duration=300", "--config", str(path))
    assert proc.stderr is not None
    said: list[str] = []

    async def read(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            said.append(raw.decode())

    reader = asyncio.create_task(read(proc.stderr))

    def failed_tries() -> list[str]:
        return [line for line in said if "mqtt: cannot connect" in line]

    try:
        async with subscribe(broker.host, broker.port) as sub:  # the plain listener, same broker
            before = (await sub.wait_for("test/stats", within=60)).json()["streams"]["cam"]["media_t"]
        away = cert.rename(tmp_path / "client.away")
        broker.restart()
        async with asyncio.timeout(30):
            while len(failed_tries()) < 2:
                assert proc.returncode is None, "".join(said)
                await asyncio.sleep(0.1)
        async with subscribe(broker.host, broker.port) as sub:
            away.rename(cert)
            await sub.wait_for("test/status", "online", within=30)  # the broker restarted: nothing retained
            after = (await sub.wait_for("test/stats", within=10)).json()["streams"]["cam"]["media_t"]
        assert proc.returncode is None
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()
        await reader
    stderr = "".join(said)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert failed_tries()
    for line in failed_tries():
        assert f"mqtt.cert_file '{cert}'" in line and "no such file or directory" in line.lower(), line
    assert after > before + 1.0  # the stream went on meanwhile
