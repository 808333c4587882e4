"""QConfig validation, defaults, per-module overrides and JSON round trip."""
import json

import pytest

from needle_qc.quantize import QConfig


def test_defaults():
    cfg = QConfig()
    assert cfg.weight == "int8" and cfg.activation is None
    assert cfg.resolved_weight_granularity == "per_channel"
    assert QConfig(weight="int4").resolved_weight_granularity == "per_group"
    assert QConfig(weight="fp16").resolved_weight_granularity is None


@pytest.mark.parametrize("kwargs,message", [
    ({"weight": "int3"}, r"weight='int3' is not valid; valid: \['int8', 'uint8', 'int4'"),
    ({"activation": "always"}, r"activation='always' is not valid; valid: \[None, 'static'"),
    ({"activation_dtype": "int16"}, r"activation_dtype='int16' is not valid; valid: \['uint8'"),
    ({"weight_granularity": "per_row"}, r"weight_granularity='per_row' is not valid"),
    ({"activation_granularity": "per_batch"}, "activation_granularity='per_batch' is not valid"),
    ({"observer": "kl"}, r"observer='kl' is not valid; valid: \['minmax', 'moving_average'"),
    ({"group_size": 0}, "group_size=0 must be an int >= 1"),
    ({"percentile": 0}, r"percentile=0 must be in \(0, 100\]"),
    ({"weight_symmetric": "yes"}, "weight_symmetric='yes' must be a bool"),
    ({"weight": "fp16", "activation": "static"}, "weight-only"),
    ({"weight": "bf16", "weight_granularity": "per_channel"}, "takes no weight_granularity"),
    ({"weight": None, "activation": "dynamic"}, "needs integer weights"),
    ({"activation": "static", "activation_granularity": "per_token"}, "needs activation='dynamic'"),
    ({"module_types": {"Linear": "int8"}}, r"module_types\['Linear'\] must be a QConfig or None"),
    ({"module_paths": {"a": QConfig(module_paths={"b": None})}}, "must not have overrides"),
])
def test_invalid_values_list_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QConfig(**kwargs)


def test_for_module_precedence():
    conv_cfg = QConfig(weight="uint8", weight_symmetric=False)
    cfg = QConfig(activation="static",
                  module_types={"Linear": None, "Conv": QConfig(weight="int4")},
                  module_paths={"layer1": conv_cfg, "layer1.0.conv": None, "head": QConfig()})
    assert cfg.for_module("layer1.0.conv", "Conv") is None           # longest path wins
    assert cfg.for_module("layer1.1.conv", "Conv") is conv_cfg       # prefix covers children
    assert cfg.for_module("layer10.conv", "Conv").weight == "int4"   # not a dotted prefix
    assert cfg.for_module("fc", "Linear") is None                    # type override
    plain = cfg.for_module("fc", "BatchNorm")
    assert plain.activation == "static" and not plain.module_types and not plain.module_paths
    assert QConfig(weight=None).for_module("x", "Linear") is None


def test_json_round_trip_and_unknown_keys():
    cfg = QConfig(weight="int8", activation="dynamic", activation_granularity="per_token",
                  group_size=64, module_types={"Embedding": None},
                  module_paths={"blocks.0": QConfig(weight="bf16")})
    text = json.dumps(cfg.to_dict())
    assert QConfig.from_dict(json.loads(text)) == cfg
    with pytest.raises(ValueError, match=r"unknown keys \['weights'\]; valid: \['weight'"):
        QConfig.from_dict({"weights": "int8"})


def test_frozen_and_replace():
    cfg = QConfig()
    with pytest.raises(AttributeError):
        cfg.weight = "int4"
    assert cfg.replace(weight="int4").weight == "int4"
    with pytest.raises(ValueError, match="unknown fields"):
        cfg.replace(bits=4)
