"""The annotation factory's side of training and evaluation: the supervision and benchmark
formats (format.py) and the synthetic scenes' captions and benchmark (synthetic_language.py)."""

from st4r_ros.supervision.format import (
    Benchmark,
    Caption,
    Expression,
    InstanceCaptions,
    Supervision,
    SupervisionView,
    load_benchmark,
    load_supervision,
    save_benchmark,
    save_supervision,
)
from st4r_ros.supervision.synthetic_language import (
    build_synthetic_task,
    write_synthetic_benchmark,
    write_synthetic_supervision,
)

__all__ = [
    "Benchmark", "Caption", "Expression", "InstanceCaptions", "Supervision", "SupervisionView",
    "load_benchmark", "load_supervision", "save_benchmark", "save_supervision",
    "build_synthetic_task", "write_synthetic_benchmark", "write_synthetic_supervision",
]
