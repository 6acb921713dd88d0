#!/usr/bin/env bash
# Creates every Polytape topic listed in deploy/topics.tsv (name, partitions, cleanup.policy,
# retention.ms, key), with rpk. Idempotent: topics that exist are left alone (their partition
# count is compared and a difference reported, never changed: repartitioning moves keys).
# Used by the compose `init-topics` service and the Kubernetes init Job.
#
# Environment: BROKERS (default redpanda:29092), TOPICS_FILE (default /init/topics.tsv),
# TOPIC_REPLICAS (default 1; 3 on a production cluster), POLYTAPE_TOPIC_PREFIX (default empty),
# RPK_EXTRA (extra rpk flags, e.g. TLS/SASL).
set -euo pipefail

brokers="${BROKERS:-redpanda:29092}"
file="${TOPICS_FILE:-/init/topics.tsv}"
replicas="${TOPIC_REPLICAS:-1}"
prefix="${POLYTAPE_TOPIC_PREFIX:-}"
# shellcheck disable=SC2206
extra=(${RPK_EXTRA:-})

existing="$(rpk topic list --brokers "$brokers" "${extra[@]}" | awk 'NR > 1 { print $1 }')"
created=0
kept=0
while IFS=$'\t' read -r name partitions cleanup retention _key; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    topic="${prefix}${name}"
    if grep -qxF "$topic" <<<"$existing"; then
        have="$(rpk topic describe "$topic" --brokers "$brokers" "${extra[@]}" --print-partitions | awk 'NR > 1' | wc -l)"
        if [[ "$have" != "$partitions" ]]; then
            echo "warning: $topic has $have partitions, topics.tsv says $partitions (left as is)" >&2
        fi
        kept=$((kept + 1))
        continue
    fi
    rpk topic create "$topic" --brokers "$brokers" "${extra[@]}" \
        --partitions "$partitions" --replicas "$replicas" \
        --topic-config "cleanup.policy=$cleanup" \
        --topic-config "retention.ms=$retention"
    created=$((created + 1))
done <"$file"
echo "topics: $created created, $kept already present"
