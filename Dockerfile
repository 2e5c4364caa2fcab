FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crawler ./crawler
COPY migrations ./migrations
RUN pip install --no-cache-dir .
ENTRYPOINT []
