#!/usr/bin/env bash
# servepath on Vertex AI: the container image as a custom-container model behind an online
# prediction endpoint. Every step is a plain gcloud or docker command; read them, or run them.
#
#   deploy/vertex/deploy.sh all          setup, build, upload, endpoint, deploy, predict
#   deploy/vertex/deploy.sh STEP...      any of: setup build local upload endpoint deploy predict
#   deploy/vertex/deploy.sh cleanup      undeploy, then delete the endpoint, the model, the image
#   DRY_RUN=1 deploy/vertex/deploy.sh all    print every command instead of running it
#
# Needs gcloud (gcloud auth login; gcloud config set project ...) and docker. Settings come from
# the variables below, each overridable from the environment: PROJECT=my-project deploy.sh all
set -euo pipefail

PROJECT="${PROJECT:-REPLACE_WITH_PROJECT_ID}"
REGION="${REGION:-europe-west4}"
REPO="${REPO:-servepath}"
TAG="${TAG:-0.1.0}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/servepath:${TAG}}"
MODEL_NAME="${MODEL_NAME:-servepath-decision}"
ENDPOINT_NAME="${ENDPOINT_NAME:-servepath}"
MACHINE_TYPE="${MACHINE_TYPE:-n1-standard-2}"
MIN_REPLICAS="${MIN_REPLICAS:-1}"
MAX_REPLICAS="${MAX_REPLICAS:-2}"
# One worker process per vCPU of MACHINE_TYPE.
WORKERS="${WORKERS:-2}"

# The container's contract: servepath's defaults (servepath/config.py). tests/deploy checks
# that the commands below pass exactly these, so the two cannot drift apart.
PREDICT_ROUTE=/decisions
HEALTH_ROUTE=/
PORT=8080

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"
REQUEST="${REQUEST:-${HERE}/request.json}"

# A command that changes something: printed, then run (only printed under DRY_RUN).
run() {
  printf '+' >&2
  printf ' %q' "$@" >&2
  printf '\n' >&2
  if [[ -z "${DRY_RUN:-}" ]]; then
    "$@"
  fi
}

# A read whose output a later step uses; under DRY_RUN it prints $1 in its place.
query() {
  local placeholder="$1"
  shift
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    echo "${placeholder}"
  else
    "$@"
  fi
}

need() {
  if [[ -z "${DRY_RUN:-}" ]] && ! command -v "$1" >/dev/null 2>&1; then
    echo "deploy.sh: $1 is not installed (${2})" >&2
    exit 2
  fi
}

model_id() {
  query MODEL_ID gcloud ai models list --project="${PROJECT}" --region="${REGION}" \
    --filter="display_name=${MODEL_NAME}" --sort-by=~createTime --limit=1 \
    --format="value(name.basename())"
}

endpoint_id() {
  query ENDPOINT_ID gcloud ai endpoints list --project="${PROJECT}" --region="${REGION}" \
    --filter="display_name=${ENDPOINT_NAME}" --limit=1 --format="value(name.basename())"
}

step_setup() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  run gcloud services enable aiplatform.googleapis.com artifactregistry.googleapis.com \
    --project="${PROJECT}"
  if [[ -n "${DRY_RUN:-}" ]] || ! gcloud artifacts repositories describe "${REPO}" \
      --project="${PROJECT}" --location="${REGION}" >/dev/null 2>&1; then
    run gcloud artifacts repositories create "${REPO}" --project="${PROJECT}" \
      --location="${REGION}" --repository-format=docker \
      --description="servepath container images"
  fi
  # Lets `docker push` authenticate to Artifact Registry with your gcloud credentials.
  run gcloud auth configure-docker "${REGION}-docker.pkg.dev" --quiet
}

step_build() {
  need docker "https://docs.docker.com/engine/install/"
  # Vertex AI runs linux/amd64; on an arm64 laptop this builds through emulation.
  run docker build --platform=linux/amd64 -f "${ROOT}/deploy/Dockerfile" -t "${IMAGE}" "${ROOT}"
  run docker push "${IMAGE}"
}

# The image, locally, with the environment Vertex AI gives it: health must answer 200 on the
# health route within 10 s of the first check, and the predict route must take the request.
step_local() {
  need docker "https://docs.docker.com/engine/install/"
  local route="/v1/endpoints/1/deployedModels/2"
  run docker run -d --rm --name servepath-vertex-check -p "127.0.0.1:${PORT}:${PORT}" \
    -e AIP_HTTP_PORT="${PORT}" -e AIP_HEALTH_ROUTE="${route}" \
    -e AIP_PREDICT_ROUTE="${route}:predict" -e AIP_MODE=PREDICTION "${IMAGE}"
  if [[ -n "${DRY_RUN:-}" ]]; then
    return 0
  fi
  local started=${SECONDS} code=000
  while (( SECONDS - started < 30 )); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT}${route}" || true)
    [[ "${code}" == 200 ]] && break
    sleep 0.2
  done
  echo "health ${route}: ${code} after $(( SECONDS - started )) s (Vertex AI wants 200 within 10 s)"
  curl -s -H 'Content-Type: application/json' --data-binary "@${REQUEST}" \
    "http://127.0.0.1:${PORT}${route}:predict"
  echo
  run docker stop servepath-vertex-check
}

step_upload() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  # The prediction log goes nowhere durable inside a Vertex AI replica; use the endpoint's
  # request-response logging, or set a postgresql:// URL here instead of off.
  run gcloud ai models upload --project="${PROJECT}" --region="${REGION}" \
    --display-name="${MODEL_NAME}" \
    --container-image-uri="${IMAGE}" \
    --container-predict-route="${PREDICT_ROUTE}" \
    --container-health-route="${HEALTH_ROUTE}" \
    --container-ports="${PORT}" \
    --container-env-vars="SERVEPATH_WORKERS=${WORKERS},SERVEPATH_STORE_URL=off"
}

step_endpoint() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  local existing=""
  if [[ -z "${DRY_RUN:-}" ]]; then
    existing="$(endpoint_id)"
  fi
  if [[ -z "${existing}" ]]; then
    run gcloud ai endpoints create --project="${PROJECT}" --region="${REGION}" \
      --display-name="${ENDPOINT_NAME}"
  fi
}

step_deploy() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  local endpoint model
  endpoint="$(endpoint_id)"
  model="$(model_id)"
  # Takes 10-20 minutes: Vertex AI provisions the machines, pulls the image, starts it, and
  # waits for the health route to answer 200.
  run gcloud ai endpoints deploy-model "${endpoint}" --project="${PROJECT}" --region="${REGION}" \
    --model="${model}" \
    --display-name="${MODEL_NAME}" \
    --machine-type="${MACHINE_TYPE}" \
    --min-replica-count="${MIN_REPLICAS}" \
    --max-replica-count="${MAX_REPLICAS}" \
    --traffic-split=0=100
}

step_predict() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  local endpoint
  endpoint="$(endpoint_id)"
  run gcloud ai endpoints predict "${endpoint}" --project="${PROJECT}" --region="${REGION}" \
    --json-request="${REQUEST}"
}

step_cleanup() {
  need gcloud "https://cloud.google.com/sdk/docs/install"
  local endpoint model deployed
  endpoint="$(endpoint_id)"
  if [[ -n "${endpoint}" ]]; then
    deployed="$(query DEPLOYED_MODEL_ID gcloud ai endpoints describe "${endpoint}" \
      --project="${PROJECT}" --region="${REGION}" --format="value(deployedModels[].id)")"
    for id in ${deployed//;/ }; do
      run gcloud ai endpoints undeploy-model "${endpoint}" --project="${PROJECT}" \
        --region="${REGION}" --deployed-model-id="${id}"
    done
    run gcloud ai endpoints delete "${endpoint}" --project="${PROJECT}" --region="${REGION}" \
      --quiet
  fi
  model="$(model_id)"
  if [[ -n "${model}" ]]; then
    run gcloud ai models delete "${model}" --project="${PROJECT}" --region="${REGION}" --quiet
  fi
  if [[ -n "${DRY_RUN:-}" ]] || gcloud artifacts docker images describe "${IMAGE}" \
      >/dev/null 2>&1; then
    run gcloud artifacts docker images delete "${IMAGE}" --delete-tags --quiet
  fi
  echo "kept the Artifact Registry repository ${REPO}; delete it with:" >&2
  echo "  gcloud artifacts repositories delete ${REPO} --location=${REGION} --project=${PROJECT}" >&2
}

run_step() {
  case "$1" in
    all)
      step_setup
      step_build
      step_upload
      step_endpoint
      step_deploy
      step_predict
      ;;
    setup | build | local | upload | endpoint | deploy | predict | cleanup)
      "step_$1"
      ;;
    *)
      echo "deploy.sh: unknown step '$1'" >&2
      usage
      ;;
  esac
}

usage() {
  echo "usage: $0 STEP [STEP ...]   STEP: all setup build local upload endpoint deploy predict cleanup" >&2
  exit 2
}

main() {
  if [[ $# -eq 0 ]]; then
    usage
  fi
  if [[ -z "${DRY_RUN:-}" && "${PROJECT}" == REPLACE_WITH_PROJECT_ID ]]; then
    echo "deploy.sh: set PROJECT to your Google Cloud project id: PROJECT=my-project $0 $*" >&2
    exit 2
  fi
  local step
  for step in "$@"; do
    run_step "${step}"
  done
}

main "$@"
