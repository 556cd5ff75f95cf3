#!/bin/bash
# One training run on a throwaway EC2 instance, rendered into the launch template's user data.
#
# It runs the exact code that serves: the workload wheel comes out of the API image (pulled by digest), is
# installed into a venv (CUDA PyTorch when a GPU is present, the CPU build otherwise), and runs
# `python -m workload ingest`, `train` and `evaluate` against the data-lake bucket. Whatever happens, the log
# goes to s3://$BUCKET/$TRAINING_LOGS_PREFIX (and live to CloudWatch Logs) and the instance powers off; the launch
# template sets shutdown behaviour to `terminate`, so nothing is left running or billing.
set -euo pipefail

# Values rendered in by Pulumi (components/training.py); the S3 prefixes are the ones the instance role may write.
# @@SETTINGS@@
export AWS_DEFAULT_REGION="$REGION"  # for the AWS CLI and boto3 alike

WORK_DIR=/opt/imdb-training
LOG_FILE=/var/log/imdb-training.log
RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"

finish() {
    local status=$?
    echo "training run ${RUN_ID} finished with exit status ${status}"
    aws s3 cp --only-show-errors "$LOG_FILE" "s3://${BUCKET}/${TRAINING_LOGS_PREFIX}${RUN_ID}.log" || true
    sleep 10  # let the CloudWatch agent ship the last lines
    shutdown -h now
}
# Armed before anything can fail, so every outcome ends in termination.
trap finish EXIT
# Dead man's switch: a run that hangs (a stuck download, a wedged GPU) still powers off in time.
shutdown -h "+${MAX_RUN_MINUTES}"

mkdir -p "$WORK_DIR"
exec >>"$LOG_FILE" 2>&1
RUN_ID="${RUN_ID}-$(cat /var/lib/cloud/data/instance-id)"
DATA_URI="s3://${BUCKET}/${PROCESSED_PREFIX}${RUN_ID}"
MODEL_URI="s3://${BUCKET}/${MODELS_PREFIX}${RUN_ID}"
echo "training run ${RUN_ID}: image ${IMAGE}, model will be ${MODEL_URI}"

dnf install -y --quiet python3.11 awscli-2 amazon-cloudwatch-agent
cat >"$WORK_DIR/cloudwatch-agent.json" <<AGENT
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "${LOG_FILE}", "log_group_name": "${LOG_GROUP}", "log_stream_name": "${RUN_ID}"}
]}}}}
AGENT
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
    -c "file:${WORK_DIR}/cloudwatch-agent.json"

# The same wheel the API image runs, taken out of that image by digest.
aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY"
docker pull --quiet "$IMAGE"
container_id="$(docker create "$IMAGE")"
docker cp "${container_id}:/opt/dist" "$WORK_DIR/dist"
docker rm "$container_id"
wheels=("$WORK_DIR"/dist/*.whl)

python3.11 -m venv "$WORK_DIR/venv"
if nvidia-smi --list-gpus >/dev/null 2>&1; then
    torch_index=()  # PyPI's Linux torch wheels are the CUDA builds
else
    torch_index=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
fi
"$WORK_DIR/venv/bin/pip" install --quiet "${torch_index[@]}" "${wheels[0]}[train]"
workload=("$WORK_DIR/venv/bin/python" -m workload)

"${workload[@]}" ingest --source "s3://${BUCKET}/${RAW_KEY}" --output "$DATA_URI"
"${workload[@]}" train --data "$DATA_URI" --output "$MODEL_URI" --arch "$ARCH" --epochs "$EPOCHS" --device auto
# the training curves next to the run's log, where a person looking at the run finds them
aws s3 cp --only-show-errors "${MODEL_URI}/report.html" "s3://${BUCKET}/${TRAINING_LOGS_PREFIX}${RUN_ID}.report.html"
# auto: the test split when raw/ holds the official tarball, the validation carve-out for a train-only one
"${workload[@]}" evaluate --model "$MODEL_URI" --data "$DATA_URI" --split auto | tee "$WORK_DIR/evaluation.txt"
tail -n 1 "$WORK_DIR/evaluation.txt" >"$WORK_DIR/evaluation.json"
# Registry records sit next to the bundle (models/<version>.*.json): `models list` shows them.
aws s3 cp --only-show-errors "$WORK_DIR/evaluation.json" "${MODEL_URI}.evaluation.json"
serving="s3://${BUCKET}/${MODELS_PREFIX}${SERVING_MODEL_VERSION}"
baseline=(--baseline "$serving")
aws s3 ls "${serving}/manifest.json" >/dev/null || baseline=()  # nothing served yet: the accuracy floor decides
"${workload[@]}" models gate --candidate "$MODEL_URI" "${baseline[@]}" --data "$DATA_URI" --record \
    || echo "the quality gate did not pass ${RUN_ID} (its verdict is above and in ${MODEL_URI}.gate.json)"
echo "model ${RUN_ID} ready: promote it with the promote workflow (or models promote --stack STACK ${RUN_ID})"
