# lmukws: the streaming keyword-spotting service, CPU only.
#
#   docker build -t lmukws .
#   docker run --rm -p 8000:8000 lmukws                 # http://localhost:8000/
#
# Build arguments
#   TORCH_INDEX_URL    package index for torch and its dependencies
#                      (default: PyTorch's CPU-only wheels; any PEP 503 index or mirror works)
#   TORCH_REQUIREMENT  what to install from it: "torch", "torch==2.5.1+cpu", or a wheel URL,
#                      e.g. http://127.0.0.1:8080/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
#                      (with `docker build --network=host` and a local `python3 -m http.server`)
#   EXTRAS             optional dependency groups of pyproject.toml, comma-separated, e.g.
#                      "ray" for an image that runs as a Ray head or worker node (docs/ray.md)
# Runtime: every setting is an LMUKWS_* variable (LMUKWS_HOST, LMUKWS_PORT, LMUKWS_MODEL,
# LMUKWS_CHECKPOINT, LMUKWS_MAX_SESSIONS, LMUKWS_TORCH_THREADS, ...); see `lmukws serve --help`.
# Classic builder syntax only (no BuildKit features).

FROM python:3.11-slim AS deps

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_REQUIREMENT=torch

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the CPU index: the project's own requirement (torch>=2.4) is then satisfied
# and pip never pulls the much larger CUDA build from PyPI.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "$TORCH_REQUIREMENT"

# the other dependencies (and those of the EXTRAS groups), in a layer of their own that only
# pyproject.toml and EXTRAS invalidate
ARG EXTRAS=""
COPY pyproject.toml /src/pyproject.toml
RUN python3 -c "import os, tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; extras = [d for e in os.environ['EXTRAS'].split(',') if e.strip() for d in p['optional-dependencies'][e.strip()]]; print('\n'.join(p['dependencies'] + extras))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt

# the project as a wheel, with the shipped checkpoints (package data of `models`) and the web page
FROM deps AS build
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src

FROM python:3.11-slim

LABEL org.opencontainers.image.title="lmukws" \
      org.opencontainers.image.description="Streaming keyword spotting with LMUFormer and Spiking LMUFormer (CPU)"

RUN groupadd --gid 10001 lmukws \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin lmukws

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    LMUKWS_HOST=0.0.0.0 \
    LMUKWS_PORT=8000

# the dependencies (a large layer that source changes leave cached), then the project
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/*.whl \
 && rm -rf /wheels \
 && python3 -c "import models, streaming.engine, server.app, server.routes.stream, client.live" \
 && lmukws --help > /dev/null

USER 10001:10001
WORKDIR /home/lmukws
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-m", "client.healthcheck"]

CMD ["lmukws", "serve"]
