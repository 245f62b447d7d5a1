"""weaver network config: weaver-core's ParticleTransformer for ``weaver --network-config``.

The model is :class:`symplug_jets.weaver.ParticleTransformerWrapper` (weaver's signature
``forward(points, features, lorentz_vectors, mask)``), so the state dict weaver saves
loads into symplug as it is (``symplug_jets.weaver.load_part``). ParT's defaults
(embed_dims [128, 512, 128], 8 particle and 2 class-attention blocks, pair inputs from
the 4-vectors); ``--network-option name value`` overrides any of them.
"""

import torch

from symplug_jets.weaver import ParticleTransformerWrapper, part_config


def get_model(data_config, **kwargs):
    cfg = part_config(input_dim=len(data_config.input_dicts["pf_features"]),
                      num_classes=len(data_config.label_value), **kwargs)
    model = ParticleTransformerWrapper(**cfg)
    model.config = cfg
    info = {"input_names": list(data_config.input_names),
            "input_shapes": {k: ((1,) + s[1:]) for k, s in data_config.input_shapes.items()},
            "output_names": ["softmax"],
            "dynamic_axes": {**{k: {0: "N", 2: "n_" + k.split("_")[0]}
                                for k in data_config.input_names}, "softmax": {0: "N"}}}
    return model, info


def get_loss(data_config, **kwargs):
    return torch.nn.CrossEntropyLoss()
