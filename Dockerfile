# litefs-py node image. Run with FUSE access, e.g.:
#   docker run --device /dev/fuse --cap-add SYS_ADMIN -v $PWD/litefs.yml:/etc/litefs.yml litefs-py
# Build stage: pyfuse3 is published as source only and needs libfuse3-dev to compile.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libfuse3-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY plugins plugins
RUN python -m venv /opt/litefs \
    && /opt/litefs/bin/pip install --no-cache-dir . ./plugins/lease_static ./plugins/lease_consul \
       ./plugins/lease_etcd ./plugins/proxy ./plugins/exec_supervisor ./plugins/metrics ./plugins/backup_s3

# Runtime stage: only fusermount3 and the shared library.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends fuse3 sqlite3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/litefs /opt/litefs
ENV PATH=/opt/litefs/bin:$PATH
# litefs mount handles SIGTERM itself (unmounts cleanly), so it can be PID 1.
ENTRYPOINT ["litefs"]
CMD ["mount", "-skip-unmount"]
