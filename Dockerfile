# Runtime image: CUDA-capable torch (PyPI's default Linux wheels bundle the CUDA runtime; the host needs only the
# NVIDIA driver and `--gpus all`), the daemon as a non-root user, data and watch folders as volumes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TORCH_HOME=/data/torch
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY daemon ./daemon
COPY stages ./stages
COPY models ./models
# gcc only for the install: it builds the pose store's C kernel (stages/pairing/_pose_kernel.c), then leaves the image.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install -c constraints.txt '.[scale]' \
    && pip install --no-deps -c constraints.txt trackers \
    && python -c 'import humanstyle.stages.pairing._pose_kernel' \
    && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/*

# Inside the container the web page and metrics must listen beyond loopback to be reachable through -p; the
# published port is still bound to the host's loopback by the compose file unless changed there. Beyond loopback
# pair curation needs metrics.write_token (add it to this file, or mount a config): without one the page is
# read-only.
RUN printf '[paths]\nwatch_dir = "/watch"\ndata_dir = "/data"\n\n[metrics]\nlisten = "0.0.0.0:9108"\n' \
        > /app/config.toml \
    && useradd --create-home --uid 1000 humanstyle \
    && mkdir -p /data /watch/movie /watch/game && chown -R humanstyle /data /watch

USER 1000
VOLUME ["/data", "/watch"]
EXPOSE 9108
# `humanstyle health` asks /healthz where the config says the daemon listens (metrics.listen), so a mounted config
# with another port keeps the check right; exit 0 only when healthy.
HEALTHCHECK --interval=30s --timeout=10s CMD ["humanstyle", "health", "--config", "/app/config.toml"]
ENTRYPOINT ["humanstyle"]
CMD ["run", "--config", "/app/config.toml"]
