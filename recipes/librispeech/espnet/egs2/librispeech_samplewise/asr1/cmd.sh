# Job runners of asr.sh (see ESPnet's egs2/TEMPLATE/asr1/cmd.sh for sge, slurm, pbs, ssh).
export train_cmd="run.pl"
export cuda_cmd="run.pl"
export decode_cmd="run.pl"
