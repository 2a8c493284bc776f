"""FBNet architecture definitions selectable by MODEL.FBNET.ARCH (maskrcnn-benchmark's set, same numbers, so its
FBNet configs and checkpoints build the same networks). Layout: see ``fbnet_builder``; block entries are
[expansion t, channels c, repeats n, stride s], a negative stride upsamples."""


def _ir_k3(*counts):
    return [["ir_k3"] * n for n in counts]


MODEL_ARCH = {
    "default": {
        "block_op_type": _ir_k3(1, 2, 3, 7, 4, 3, 5),
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 24, 2, 2]],
                [[6, 32, 3, 2]],
                [[6, 64, 4, 2], [6, 96, 3, 1]],
                [[4, 160, 1, 2], [6, 160, 2, 1], [6, 240, 1, 1]],  # 4: box head
                [[6, 96, 3, 1]],  # 5: RPN head
                [[4, 160, 1, 1], [6, 160, 3, 1], [3, 80, 1, -2]],  # 6: mask head (upsamples x2)
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
            "mask": [6],
        },
    },
    "xirb16d_dsmask": {
        "block_op_type": _ir_k3(1, 2, 3, 7, 4, 5, 3),
        "block_cfg": {
            "first": [16, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 32, 2, 2]],
                [[6, 48, 3, 2]],
                [[6, 96, 4, 2], [6, 128, 3, 1]],
                [[4, 128, 1, 2], [6, 128, 2, 1], [6, 160, 1, 1]],  # 4: box head
                [[4, 128, 1, 2], [6, 128, 2, 1], [6, 128, 1, -2], [3, 64, 1, -2]],  # 5: mask head (down x2, up x4)
                [[6, 128, 3, 1]],  # 6: RPN head
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [6],
            "bbox": [4],
            "mask": [5],
        },
    },
    "mobilenet_v2": {
        "block_op_type": _ir_k3(1, 2, 3, 7, 4),
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 24, 2, 2]],
                [[6, 32, 3, 2]],
                [[6, 64, 4, 2], [6, 96, 3, 1]],
                [[6, 160, 3, 1], [6, 320, 1, 1]],  # 4: box head
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "bbox": [4],
        },
    },
    "cham_v1a": {
        "block_op_type": [["ir_k3"], ["ir_k7"] * 2, ["ir_k3"] * 5, ["ir_k5"] * 7 + ["ir_k3"] * 5, ["ir_k3"] * 5,
                          ["ir_k3"] * 3],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 24, 1, 1]],
                [[4, 48, 2, 2]],
                [[7, 64, 5, 2]],
                [[12, 56, 7, 2], [8, 88, 5, 1]],
                [[7, 152, 4, 2], [10, 104, 1, 1]],  # 4: box head
                [[8, 88, 3, 1]],  # 5: RPN head
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
        },
    },
    "cham_v2": {
        "block_op_type": [["ir_k3"], ["ir_k5"] * 4, ["ir_k7"] * 6, ["ir_k5"] * 3 + ["ir_k3"] * 6, ["ir_k3"] * 7,
                          ["ir_k3"] * 1],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 24, 1, 1]],
                [[8, 32, 4, 2]],
                [[5, 48, 6, 2]],
                [[9, 56, 3, 2], [6, 56, 6, 1]],
                [[2, 160, 6, 2], [6, 112, 1, 1]],  # 4: box head
                [[6, 56, 1, 1]],  # 5: RPN head
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
        },
    },
}
