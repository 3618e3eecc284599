"""Host tests: one real ComfyUI server for the session, on 127.0.0.1 only.

The host is found through `COMFYUI_PATH` (a ComfyUI checkout) and its python
through `COMFYUI_PYTHON` (default `$COMFYUI_PATH/.venv/bin/python`). Without
them every host test is skipped and one loud line says so. The server loads
this pack (as `psi_sampler`) and the test-only fixture pack through
`--extra-model-paths-config`; its models, inputs, outputs and user files live in
a temporary base directory; it runs single-threaded (tiny models are fastest
that way on a shared CPU, and float results do not depend on thread counts).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURE_PACK = HERE / "fixture_pack" / "psi_test_fixtures"
DRIVER = HERE / "ws_driver.py"
START_TIMEOUT = 180.0

collect_ignore = ["fixture_pack"]

if str(HERE) not in sys.path:  # the test module imports host_graphs (pytest runs with --import-mode=importlib)
    sys.path.insert(0, str(HERE))


def host_location() -> tuple[Path | None, Path | None, str | None]:
    """(ComfyUI dir, its python, None) or (None, None, why the host tests are skipped)."""
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        return None, None, "COMFYUI_PATH is not set"
    root_path = Path(root)
    if not (root_path / "main.py").is_file():
        return None, None, f"COMFYUI_PATH={root} has no main.py"
    python = Path(os.environ.get("COMFYUI_PYTHON") or root_path / ".venv" / "bin" / "python")
    if not python.exists():
        return None, None, f"COMFYUI_PYTHON={python} does not exist"
    return root_path, python, None


def optional_packages() -> Path | None:
    """A folder of the pack's optional extras for the host's PYTHONPATH (`PSI_HOST_OPTIONAL`, built by
    scripts/side_env.sh host-optional), so the host's own environment stays as ComfyUI installs it."""
    value = os.environ.get("PSI_HOST_OPTIONAL")
    return Path(value) if value and Path(value).is_dir() else None


def skip_line(reason: str) -> str:
    return (f"HOST TESTS SKIPPED ({reason}): set COMFYUI_PATH to a ComfyUI checkout and COMFYUI_PYTHON to its "
            "python (default $COMFYUI_PATH/.venv/bin/python) to run tests/host")


def _is_host_item(item) -> bool:
    return HERE in Path(str(item.fspath)).resolve().parents


def pytest_collection_modifyitems(config, items):
    _, _, reason = host_location()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=skip_line(reason))
    for item in items:
        if _is_host_item(item):
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    _, _, reason = host_location()
    if reason is not None:
        terminalreporter.write_line(skip_line(reason), red=True, bold=True)


def _end_with_parent() -> None:
    """In the server's process before exec: Linux ends it when the test process dies, so a killed or
    timed-out test run leaves no server behind (elsewhere nothing is done)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A running ComfyUI and small helpers around its HTTP API."""

    def __init__(self, root: Path, python: Path, work: Path):
        self.root, self.python, self.work = root, python, work
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = work / "server.log"
        self.process: subprocess.Popen | None = None

    #: packs loaded beside the pack and the fixture pack ({folder name: path}); subclasses add theirs
    extra_packs: dict[str, Path] = {}
    #: a folder put on the server's PYTHONPATH (optional extras a user may install), or None
    python_path: Path | None = None
    #: node ids that must be registered once the server answers
    required_nodes: tuple[str, ...] = ("PsiInitialSampler", "PsiTestTinyModel")

    def model_paths(self) -> dict[str, Path]:
        """Model folders for the extra-model-paths yaml ({folder type: path})."""
        return {}

    # -- lifetime
    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the process on 127.0.0.1 with the packs and model folders (returns at once)."""
        packs = self.work / "packs"
        packs.mkdir()
        for name, target in {"psi_sampler": REPO, "psi_test_fixtures": FIXTURE_PACK, **self.extra_packs}.items():
            (packs / name).symlink_to(target, target_is_directory=True)
        base = self.work / "base"
        (base / "custom_nodes").mkdir(parents=True)
        config = self.work / "extra_model_paths.yaml"
        folders = "".join(f"  {kind}: {path}\n" for kind, path in self.model_paths().items())
        config.write_text(f"psi_host_tests:\n  custom_nodes: {packs}\n{folders}")
        # oneDNN picks other float32 convolution kernels for other batch sizes on AVX-512 CPUs, so a
        # particle's gradient alone and in a batch then differ by ~1e-3 relative through T2ICount's long
        # path (1e-5 with AVX2 kernels): like the thread count, the kernels are fixed so that test
        # figures do not depend on the machine
        env = {"ONEDNN_MAX_CPU_ISA": "AVX2", **os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1"}
        if self.python_path is not None:
            env["PYTHONPATH"] = str(self.python_path)
        command = [str(self.python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--extra-model-paths-config", str(config), "--base-directory", str(base),
                   "--disable-auto-launch", "--preview-method", "latent2rgb",
                   # its own database (0.33 locks a SQLite file under the ComfyUI folder, so servers side
                   # by side would fight over it) and the classic cache the tests assume (0.33 defaults
                   # to the RAM-pressure cache); both flags exist from 0.3.64 on
                   "--database-url", "sqlite:///:memory:", "--cache-classic"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            preexec_fn=_end_with_parent)

    def wait_ready(self) -> None:
        """Wait until the server answers (custom nodes load before it serves), then check
        that the required nodes registered and no pack of ours failed to import."""
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                info = self.get("/object_info")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        else:
            raise RuntimeError(f"ComfyUI did not start in {START_TIMEOUT} s:\n{self.log_tail()}")
        missing = [n for n in self.required_nodes if n not in info]
        ours = ("psi_sampler", "psi_test_fixtures", *self.extra_packs)
        failed = [line for line in self.log_path.read_text().splitlines()
                  if "IMPORT FAILED" in line and any(name in line for name in ours)]
        if missing or failed:
            raise RuntimeError(f"pack import failed (missing {missing}):\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # -- HTTP
    def get(self, path: str):
        with urllib.request.urlopen(f"http://{self.host}{path}", timeout=30) as reply:
            return json.loads(reply.read())

    def queue(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; (HTTP status, reply)."""
        data = json.dumps({"prompt": prompt, "client_id": "psi-host-tests"}).encode()
        request = urllib.request.Request(f"http://{self.host}/prompt", data=data,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def history(self, prompt_id: str, timeout: float = 180.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                return entry
            time.sleep(0.2)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 180.0) -> dict:
        """Queue, check node_errors, wait; returns the history entry (any status)."""
        status, reply = self.queue(prompt)
        assert status == 200 and not reply.get("node_errors"), f"prompt refused: {status} {reply}"
        return self.history(reply["prompt_id"], timeout)

    def drive(self, prompt: dict, interrupt_after: str | None = None, timeout: float = 180.0) -> dict:
        """Queue through the websocket driver (host python); returns its JSON (events included)."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.work, delete=False) as f:
            json.dump(prompt, f)
        command = [str(self.python), str(DRIVER), self.host, f.name, "--timeout", str(timeout)]
        if interrupt_after:
            command += ["--interrupt-after", interrupt_after]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30)
        assert done.returncode == 0, f"driver failed: {done.stderr[-3000:]}"
        return json.loads(done.stdout.strip().splitlines()[-1])


def run_server(server, while_booting=None, log_env: str = "PSI_HOST_LOG"):
    """Generator behind a server fixture: launch `server`, run `while_booting(server)` while
    ComfyUI starts (writing model files, say), yield the ready server and stop it afterwards
    (printing its log tail when `log_env` is set)."""
    try:
        server.launch()
        if while_booting is not None:
            while_booting(server)
        server.wait_ready()
        yield server
    finally:
        server.stop()
        if os.environ.get(log_env):
            sys.stderr.write(server.log_tail(20000))


def serve(make_server, tmp_path_factory, name: str, while_booting=None):
    """run_server for `make_server(root, python, work)`, or skip where no host is found."""
    root, python, reason = host_location()
    if reason is not None:
        pytest.skip(skip_line(reason))
    yield from run_server(make_server(root, python, tmp_path_factory.mktemp(name)), while_booting)


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    yield from serve(ComfyServer, tmp_path_factory, "comfy_host")
