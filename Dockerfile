# syntax=docker/dockerfile:1
# The meshauth image: one image for every service (auth, policy, migrations); the command picks one.
#
# The build stage's RUN lines are run as written, in the same order, by tests/deploy/test_image.py
# (with VENV and WHEELHOUSE pointed at a temporary directory), followed by the runtime stage's
# ENTRYPOINT + CMD and HEALTHCHECK: change a step here and the test runs the new one.
#
#   docker build -t meshauth:0.1.0 .
#   docker run --rm -p 8080:8080 -e REDIS_URL=redis://host:6379/0 -e DATABASE_URL=postgresql://... meshauth:0.1.0
#   docker run --rm -p 8090:8090 -e HEALTHCHECK_URL=http://127.0.0.1:8090/healthz ... meshauth:0.1.0 serve policy --no-migrate
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel, and a virtual environment holding it with its pinned dependencies ------------
FROM ${PYTHON_IMAGE} AS build
ENV VENV=/opt/meshauth \
    WHEELHOUSE=/tmp/wheelhouse \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# The wheel is built in pip's isolated build environment (hatchling lives there and goes with it).
RUN python -m pip wheel --no-deps --wheel-dir "$WHEELHOUSE" .
RUN python -m venv "$VENV"
# Every dependency comes as a binary wheel at the version pinned in constraints.txt: no compiler needed.
RUN "$VENV/bin/pip" install --no-cache-dir --only-binary=:all: -c constraints.txt "$WHEELHOUSE"/meshauth-*.whl
RUN "$VENV/bin/meshauth" --help

# --- runtime: the interpreter, the virtual environment, an unprivileged user; no build tools ---------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 meshauth \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/meshauth --create-home \
      --shell /usr/sbin/nologin meshauth
COPY --from=build /opt/meshauth /opt/meshauth
# Listen on every interface: Istio's sidecar forwards inbound traffic to the pod IP, not to loopback.
ENV PATH=/opt/meshauth/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MESHAUTH_VAR_DIR=/var/lib/meshauth \
    MESHAUTH_AUTH_HOST=0.0.0.0 \
    MESHAUTH_POLICY_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/meshauth
# auth HTTP, auth ext_authz gRPC, policy HTTP
EXPOSE 8080 9001 8090
# Liveness for plain Docker. Kubernetes ignores HEALTHCHECK: its probes use /healthz (liveness, asks
# nothing) and /readyz (readiness; auth: database, Redis and the revocation stream; policy: the
# database) - deploy/k8s/base. Running the policy service, set HEALTHCHECK_URL=http://127.0.0.1:8090/healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(u.urlopen(os.environ.get('HEALTHCHECK_URL', 'http://127.0.0.1:8080/healthz'), timeout=2).status != 200)"]
ENTRYPOINT ["meshauth"]
CMD ["serve", "auth", "--no-migrate"]
