#!/usr/bin/env python
"""Train a detector from a config file, then evaluate it on DATASETS.TEST.

    python tools/train_net.py --config-file configs/demo/nuclei_R_18_FPN.yaml [KEY VALUE ...]
    torchrun --nproc_per_node=2 tools/train_net.py --config-file ... (gloo on CPU, nccl on GPUs)
    python -m torch.distributed.launch --nproc_per_node=2 tools/train_net.py ... (passes --local_rank)

The run itself (resume or initialise, periodic and final evaluation, best checkpoint) is
maskrcnn_benchmark/engine/train_net.py; code that trains in-process calls its ``main(argv)`` or ``train(cfg, ...)``.
"""
from maskrcnn_benchmark.engine.train_net import main

if __name__ == "__main__":
    main()
