#!/usr/bin/env bash
# A shell pipeline tracked by tasker: every step is a run, with progress as subtasks.
#   bash examples/shell_pipeline.sh
# TASKER names the command (default: tasker), e.g. TASKER="python -m tasker".
set -euo pipefail
TASKER=${TASKER:-tasker}

# A step that can be wrapped: `tasker run` records its exit status and stderr.
$TASKER run --stage PREREQ --name "Check tools" -- sh -c 'command -v sort > /dev/null'

# A step that tracks itself: the run belongs to this shell.
TASKER_RUN_ID=$($TASKER start STATIC "Count words" --total-subtasks 1)
export TASKER_RUN_ID
files=(alpha beta gamma delta)
$TASKER subtask start "Counting files" --items ${#files[@]}
for f in "${files[@]}"; do
    echo "$f" | wc -c > /dev/null
    $TASKER subtask increment
done
$TASKER subtask complete --message "all files counted"
$TASKER complete --message "${#files[@]} files"
unset TASKER_RUN_ID

# A failing step is recorded FAILED with its status; the pipeline decides what follows.
if ! $TASKER run --stage DAILY --name "Publish" -- sh -c 'echo "no network" >&2; exit 4'; then
    echo "publish failed; the report is kept for tomorrow" >&2
fi
