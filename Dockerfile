# allen-mirror: the command and its migrations, nothing else. docker-compose.yml runs it as
# scalable workers on a Postgres manifest (README "Scaling out").
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY migrations ./migrations
RUN pip install --no-cache-dir .
COPY config ./config
# SIGTERM (docker stop) stops a worker gracefully: it finishes in-flight items for
# grace_seconds, releases its claims and exits 143.
STOPSIGNAL SIGTERM
ENTRYPOINT []
CMD ["allen-mirror", "--help"]
