# Sourced by dist_train.sh and slurm_train.sh: the checks both launchers make before starting any process.

# check_launch_args SCRIPT CONFIG NUM_GPUS: exit 2 with a message naming the bad value.
check_launch_args() {
    local script=$1 config=$2 gpus=$3
    if ! [[ "$gpus" =~ ^[1-9][0-9]*$ ]]; then
        echo "$script: NUM_GPUS must be a positive integer, got '$gpus'" >&2
        exit 2
    fi
    if [ ! -f "$config" ]; then
        echo "$script: config file '$config' does not exist" >&2
        exit 2
    fi
}
