# syntax=docker/dockerfile:1
# esbridge service image.
#   docker build -t esbridge:0.1.0 .
#   docker run -p 9108:9108 -v "$PWD/checks:/etc/esbridge/checks:ro" \
#     -e ESBRIDGE_ELASTICSEARCH__DEFAULT__URLS=http://elasticsearch:9200 esbridge:0.1.0

# --- builder: the project's wheel plus every dependency's wheel -----------------------------
FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
COPY scripts/check_esbridge scripts/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------
FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin esbridge \
    && mkdir -p /etc/esbridge/checks \
    && printf '%s\n' \
        '# Default configuration of the image: mount your own over it.' \
        'host: 0.0.0.0' \
        'port: 9108' \
        'checks:' \
        '  - /etc/esbridge/checks' > /etc/esbridge/esbridge.yaml
# the wheels come in through a bind mount: they never become an image layer; then
# check_esbridge on PATH becomes the "#!python -IS" script of `esbridge install-plugin`
# instead of pip's sh launcher (no shell to start on every check)
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/esbridge-*.whl \
    && esbridge install-plugin --force /usr/local/bin
USER 10001:10001
EXPOSE 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["esbridge", "serve"]
CMD ["--config", "/etc/esbridge/esbridge.yaml"]
