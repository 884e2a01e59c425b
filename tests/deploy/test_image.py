"""The container image, minus ``docker build``: the Dockerfile's build steps run as written, then the
image's entry point and health check run from the environment they built.

No container engine runs on these machines, so the test reads the Dockerfile and runs its build
stage's RUN lines itself, in order, in a copy of the build context, with every absolute path the
Dockerfile names (``/opt/meshauth``, ``/var/lib/meshauth``...) moved under a temporary root. The
runtime stage is checked for what it must be (unprivileged, no build tools, the build's environment
copied whole) and its ENTRYPOINT + CMD and HEALTHCHECK are run from that environment against SQLite
and this run's embedded Valkey. Changing a step in the Dockerfile changes what this test runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshauth.local.health import wait_healthy
from tests.deploy.dockerfile import Stage, exec_form, parse
from tests.served import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|cc|clang|hatchling|setuptools|wheel|pip)\b")
# Building the wheel and installing ~40 pinned wheels into a fresh environment takes 40-60 s here.
pytestmark = pytest.mark.timeout(600)


@dataclass(frozen=True)
class Built:
    root: Path  # what "/" is for the image's paths
    build: Stage
    runtime: Stage
    ran: list[str]  # the build stage's RUN lines, in the order they ran

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def runtime_env(self, **extra: str) -> dict[str, str]:
        """The runtime stage's ENV with image paths moved under ``root``, over a clean environment."""
        env = _clean_env()
        for key, value in self.runtime.env().items():
            parts = [
                SYSTEM_PATH if p == "$PATH" else str(self.path(p)) if p.startswith("/") else p for p in value.split(":")
            ]
            env[key] = ":".join(parts)
        env.update(extra)
        return env


def _clean_env() -> dict[str, str]:
    # Nothing of this checkout may leak in: the installed environment must stand on its own.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "REDIS_URL", "DATABASE_URL", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MESHAUTH_")}
    env["PATH"] = SYSTEM_PATH
    return env


def _copy_context(stage: Stage, workdir: Path) -> None:
    for arg in stage.all("COPY"):
        words = shlex.split(arg)
        if any(w.startswith("--") for w in words):
            raise AssertionError(f"build stage COPY with options is not reproduced here: COPY {arg}")
        *sources, dest = words
        target = workdir / dest
        for source in sources:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The build stage, run: its RUN lines in a copy of its context, with its ENV paths moved."""
    _args, stages = parse(DOCKERFILE)
    by_name = {s.name: s for s in stages}
    build, runtime = by_name["build"], stages[-1]
    root = tmp_path_factory.mktemp("image")
    workdirs = build.all("WORKDIR")
    assert len(workdirs) == 1, "one WORKDIR in the build stage"
    workdir = root / workdirs[0].lstrip("/")
    workdir.mkdir(parents=True)
    _copy_context(build, workdir)
    env = _clean_env()
    # The image's `python` is the base image's interpreter; here it is this test's.
    env["PATH"] = f"{Path(sys.executable).parent}:{SYSTEM_PATH}"
    for key, value in build.env().items():
        env[key] = str(root / value.lstrip("/")) if value.startswith("/") else value
    ran: list[str] = []
    for command in build.all("RUN"):
        result = subprocess.run(  # the Dockerfile's shell form: /bin/sh -c
            ["/bin/sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        ran.append(command)
    return Built(root=root, build=build, runtime=runtime, ran=ran)


@pytest.fixture
def served(built: Built, tmp_path: Path, valkey_url: str) -> Iterator[tuple[Built, dict[str, str], int]]:
    """The image's ENTRYPOINT + CMD, after the migration Job's command, against SQLite and Valkey."""
    port, grpc_port = free_port(), free_port()
    env = built.runtime_env(
        MESHAUTH_DATABASE_URL=f"sqlite:///{tmp_path}/meshauth.db",
        MESHAUTH_REDIS_URL=valkey_url,
        MESHAUTH_ADMIN_TOKEN="image-test-admin-token-0123456789",
        MESHAUTH_AUTH_PORT=str(port),
        MESHAUTH_GRPC_PORT=str(grpc_port),
    )
    var, entrypoint = _migrate(built, env)
    command = [*entrypoint, *exec_form(built.runtime.all("CMD")[-1])]
    with subprocess.Popen(command, cwd=var, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout=60, name=" ".join(command))
            yield built, env, port
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def _migrate(built: Built, env: dict[str, str]) -> tuple[Path, list[str]]:
    """Run the migration Job's command (``meshauth db upgrade``) through the image's ENTRYPOINT."""
    var = Path(env["MESHAUTH_VAR_DIR"])
    var.mkdir(parents=True, exist_ok=True)  # useradd --create-home, in the image
    entrypoint = exec_form(built.runtime.all("ENTRYPOINT")[-1])
    migrate = subprocess.run(
        [*entrypoint, "db", "upgrade"], cwd=var, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert migrate.returncode == 0, migrate.stderr
    return var, entrypoint


def _healthcheck(built: Built, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    arg = built.runtime.all("HEALTHCHECK")[-1]
    _options, sep, cmd = arg.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {arg}"
    return subprocess.run(exec_form(cmd), env=env, capture_output=True, text=True, timeout=30, check=False)


def test_build_stage_runs_every_step(built: Built) -> None:
    """Every RUN of the build stage ran and succeeded; the last one is `meshauth --help` from the new environment."""
    assert built.ran == built.build.all("RUN")
    assert any("pip wheel" in c for c in built.ran) and any("-c constraints.txt" in c for c in built.ran)
    assert built.ran[-1].endswith('/bin/meshauth" --help')
    venv = built.path(built.build.env()["VENV"])
    assert (venv / "bin" / "meshauth").is_file()


def test_runtime_stage_copies_the_build_environment_to_the_same_path(built: Built) -> None:
    """A virtual environment is not relocatable: the runtime stage copies it to the path it was built at."""
    copies = [a for a in built.runtime.all("COPY") if a.startswith("--from=build ")]
    assert copies == [f"--from=build {built.build.env()['VENV']} {built.build.env()['VENV']}"]
    assert built.runtime.all("COPY") == copies, "the runtime stage takes nothing from the build context"
    assert built.runtime.base == built.build.base, "same interpreter in both stages"


def test_runtime_stage_is_unprivileged_and_has_no_build_tools(built: Built) -> None:
    """USER is a numeric non-root uid (Kubernetes' runAsNonRoot can check it); the runtime stage installs nothing."""
    users = built.runtime.all("USER")
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    for command in built.runtime.all("RUN"):
        assert not BUILD_TOOLS.search(command), command
        assert "apt-get" not in command and "install " not in command, command


def test_entrypoint_serves_auth_and_answers_readiness(served: tuple[Built, dict[str, str], int]) -> None:
    """The image's default command serves the auth service; /readyz (Kubernetes' readiness probe) answers ready."""
    _built, _env, port = served
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
        assert resp.status == 200
        assert b'"ready"' in resp.read()


def test_healthcheck_passes_while_serving_and_fails_without_a_server(served: tuple[Built, dict[str, str], int]) -> None:
    """The HEALTHCHECK command exits 0 against the serving container and non-zero when nothing answers."""
    built, env, port = served
    assert _healthcheck(built, {**env, "HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}).returncode == 0
    nobody = free_port()
    assert _healthcheck(built, {**env, "HEALTHCHECK_URL": f"http://127.0.0.1:{nobody}/healthz"}).returncode != 0


def test_default_healthcheck_url_is_the_auth_port(built: Built) -> None:
    """Without HEALTHCHECK_URL the check asks the auth service's default port, the image's default command."""
    assert "'http://127.0.0.1:8080/healthz'" in built.runtime.all("HEALTHCHECK")[-1]
    assert exec_form(built.runtime.all("CMD")[-1])[:2] == ["serve", "auth"]
    assert "8080" in built.runtime.all("EXPOSE")[-1].split()


def test_policy_service_runs_from_the_image(built: Built, tmp_path: Path, valkey_url: str) -> None:
    """`serve policy`, the policy Deployment's command, runs from the same environment, passes the health
    check and answers ready."""
    port = free_port()
    env = built.runtime_env(
        MESHAUTH_DATABASE_URL=f"sqlite:///{tmp_path}/meshauth.db",
        MESHAUTH_REDIS_URL=valkey_url,
        MESHAUTH_POLICY_PORT=str(port),
        HEALTHCHECK_URL=f"http://127.0.0.1:{port}/healthz",
    )
    var, entrypoint = _migrate(built, env)
    with subprocess.Popen(
        [*entrypoint, "serve", "policy", "--no-migrate"],
        cwd=var,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, timeout=60, name="serve policy")
            assert _healthcheck(built, env).returncode == 0
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:  # readiness probe
                assert json.loads(resp.read()) == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_build_context_lets_through_exactly_what_the_build_copies() -> None:
    """.dockerignore excludes everything but the build stage's COPY sources (no .venv, var/ or .git sent)."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    build = {s.name: s for s in parse(DOCKERFILE)[1]}["build"]
    sources = {s for arg in build.all("COPY") for s in shlex.split(arg)[:-1]}
    assert allowed == sources
