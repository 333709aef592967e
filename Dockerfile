# syntax=docker/dockerfile:1
# The controller image: `canary run` as a non-root user, no build tools.

FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/canary
COPY constraints.txt pyproject.toml README.md ./
COPY canary ./canary
COPY analysis ./analysis
# Every dependency pinned by constraints.txt (regenerate: hack/lock.sh).
RUN /opt/canary/bin/pip install --no-cache-dir --constraint constraints.txt . \
    && find /opt/canary -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
RUN groupadd --gid 10001 canary && useradd --uid 10001 --gid canary --no-create-home canary
COPY --from=build /opt/canary /opt/canary
ENV PATH=/opt/canary/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["canary"]
CMD ["run"]
