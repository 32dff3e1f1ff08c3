"""Measures of representation quality: weighted k-NN, RankMe, feature
extraction, and the hook that logs them while pretraining."""
from .features import (  # noqa: F401
                       eval_pipeline,
                       extract_features,
                       extract_features_dist,
                       gather_shards,
                       pool,
)
from .knn import knn_accuracy, knn_votes  # noqa: F401
from .rankme import rankme  # noqa: F401
from .representation_monitor_hook import RepresentationMonitorHook  # noqa: F401,E501
