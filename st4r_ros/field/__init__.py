"""Where: the instance-aware 4D Gaussian referring field (ST4R-Splat), its losses, the
instance assignment from 2D masks, training and the 'referring' semantic layer on disk."""

from st4r_ros.field.layer import load_referring_layer, save_referring_layer
from st4r_ros.field.model import (FieldConfig, Grounding, ReferringField, best_scores,
                                  ground_expressions, render_relevance)

__all__ = ["FieldConfig", "Grounding", "ReferringField", "best_scores", "ground_expressions",
           "load_referring_layer", "render_relevance", "save_referring_layer"]
