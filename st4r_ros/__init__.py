"""st4r_ros: spatio-temporal referring queries over 4D Gaussian Splatting scenes."""

__version__ = "0.1.0"
