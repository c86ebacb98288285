# The project image: used by the mlflow, dashboard, ray-head, ray-worker and hpo services of
# docker-compose.yml. CPU-only torch (the CUDA wheels are several GB); GPU images are not covered yet.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the CPU index, so the project's `torch>=...` range is already met.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hpo ./hpo
COPY tracker ./tracker
COPY trainers ./trainers
COPY dashboard ./dashboard
# ray[default] adds the Ray dashboard served by the ray-head service.
RUN pip install . "ray[default]==2.60.0"

# Sweep files are mounted here by the `hpo` service; results of local stores would land in /work/.hpo.
WORKDIR /work
