# The coordinator's image: `tpf coordinator`, as the template's Fargate service runs it
# (infra/_coordinator_service.py). Build it from the repository root:
#   docker build -t tpf-coordinator .
# Its settings come from the environment (TPF_STACK, TPF_SUBSTRATE=aws, the secretsmanager:
# references); the task definition checks /q/health/ready, so the image declares no HEALTHCHECK.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin tpf
# A replica holds nothing on disk: the root filesystem may be mounted read-only.
USER 10001:10001
WORKDIR /tmp
ENV TPF_SUBSTRATE=aws \
    TPF_API_HOST=0.0.0.0 \
    TPF_API_PORT=8081
EXPOSE 8081
CMD ["tpf", "coordinator"]
