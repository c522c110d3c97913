# The control-plane image the Kubernetes manifests name (deploy/kubernetes/base/control-plane.yaml).
# Build: docker build -t ghcr.io/ubiq-project/ubiq:0.1.0 .
# Not built in CI (CI has no container runtime or registry); the manifests are validated offline.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY controlplane ./controlplane
COPY templates ./templates
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/ubiq-*.whl

FROM python:3.11-slim
RUN useradd --system --uid 65532 --home-dir /nonexistent --shell /usr/sbin/nologin ubiq
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels ubiq && rm -rf /wheels
USER 65532:65532
ENV UBIQ_POLICY_DIR=/etc/ubiq/policies
# xDS, DNS (unprivileged port; the Service maps 53), API
EXPOSE 18000 5353/udp 5353/tcp 8081
ENTRYPOINT ["ubiq"]
CMD ["serve"]
